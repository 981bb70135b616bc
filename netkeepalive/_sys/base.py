"""The interface every platform backend implements."""

from __future__ import annotations

from ..errors import UnsupportedOptionError

TYPE_CHECKING = False  # the tables load with the first backend, not at import
if TYPE_CHECKING:
    from typing import Callable

    from ..constants import Option, PlatformTable

__all__ = ["Backend"]


class Backend:
    """Sets and reads one ``int``-valued socket option on a descriptor.

    Values are in the option's own unit (:attr:`Option.unit`); converting
    from the public API's milliseconds is the caller's job.
    """

    table: PlatformTable
    #: Whether a descriptor may be wider than a C ``int`` (Windows' ``SOCKET``
    #: is pointer-sized), in which case the backend checks its range itself.
    wide_descriptors = False

    def __init__(self, table: PlatformTable) -> None:
        self.table = table

    def option(self, knob: str) -> Option:
        """The option for *knob*, or :class:`UnsupportedOptionError`."""
        opt = self.table.option(knob)
        if opt is None:
            raise UnsupportedOptionError.for_knob(knob, self.table.name)
        return opt

    def set(self, fd: int, opt: Option, value: int) -> None:  # pragma: no cover
        """``setsockopt(fd, opt.level, opt.number, &value, sizeof value)``."""
        raise NotImplementedError

    def get(self, fd: int, opt: Option) -> int:  # pragma: no cover
        """``getsockopt(fd, opt.level, opt.number, &value, &len)``."""
        raise NotImplementedError

    def setter(self, opt: Option) -> Callable[[int, int], None]:
        """A function ``(fd, value)`` doing :meth:`set` for *opt*.

        The public API asks once per option and keeps it; a backend may
        return something faster than this plain forwarding, with the same
        behaviour and errors.
        """
        set_option = self.set

        def set_value(fd: int, value: int) -> None:
            set_option(fd, opt, value)

        return set_value

    def getter(self, opt: Option) -> Callable[[int], int]:
        """A function ``(fd) -> value`` doing :meth:`get` for *opt* (see :meth:`setter`)."""
        get_option = self.get

        def get_value(fd: int) -> int:
            return get_option(fd, opt)

        return get_value
