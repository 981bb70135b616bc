"""The interface every platform backend implements."""

from __future__ import annotations

from ..constants import Option, PlatformTable
from ..errors import UnsupportedOptionError

__all__ = ["Backend"]


class Backend:
    """Sets and reads one ``int``-valued socket option on a descriptor.

    Values are in the option's own unit (:attr:`Option.unit`); converting
    from the public API's milliseconds is the caller's job.
    """

    table: PlatformTable

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
