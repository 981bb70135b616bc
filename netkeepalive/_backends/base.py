"""The interface every platform backend implements."""

from __future__ import annotations

from ..errors import UnsupportedOptionError

TYPE_CHECKING = False  # the tables load with the first backend, not at import
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

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
    #: Whether :meth:`fast_functions` are the C library's own
    #: ``setsockopt``/``getsockopt``, the ones the socket module calls.
    libc_calls = False

    def __init__(self, table: PlatformTable) -> None:
        self.table = table

    def option(self, knob: str) -> Option:
        """The option for *knob*, or :class:`UnsupportedOptionError`."""
        opt = self.table.option(knob)
        if opt is None:
            raise UnsupportedOptionError.for_knob(knob, self.table.name)
        return opt

    def _unreadable(self, opt: Option, detail: str) -> UnsupportedOptionError:
        """The error for *opt*, which this kernel cannot report (``getsockopt``)."""
        exc = UnsupportedOptionError.for_knob(opt.knob, self.table.name, detail)
        exc.call = "getsockopt"
        return exc

    def set(self, fd: int, opt: Option, value: int) -> None:  # pragma: no cover
        """``setsockopt(fd, opt.level, opt.number, &value, sizeof value)``."""
        raise NotImplementedError

    def get(self, fd: int, opt: Option) -> int:  # pragma: no cover
        """``getsockopt(fd, opt.level, opt.number, &value, &len)``."""
        raise NotImplementedError

    def fast_functions(self) -> Optional[Tuple[Callable[..., int], Callable[..., int], Any]]:
        """``(setsockopt, getsockopt, buffers)`` for the public API's fast path.

        The two C functions with their C signatures, and per-thread getter
        buffers (``buffers.fast`` is ``(view, &value, &length)``); ``None``
        where the backend has no such path and every call goes through
        :meth:`set`/:meth:`get`.
        """
        return None
