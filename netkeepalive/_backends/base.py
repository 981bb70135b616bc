"""The interface every platform backend implements."""

from __future__ import annotations

import ctypes
import functools
import struct
import sys
import threading

from ..errors import UnsupportedOptionError

TYPE_CHECKING = False  # the tables load with the first backend, not at import
if TYPE_CHECKING:
    from typing import Any, Callable, Optional, Tuple

    from ..constants import Option, PlatformTable

__all__ = ["INT_SIZE", "Backend", "Pair", "ThreadBuffers", "decoding", "has_gil", "pack_int"]

INT_SIZE = ctypes.sizeof(ctypes.c_int)
#: A C ``int`` as 4 new bytes for ``setsockopt``: shared with nothing, and a
#: number no C ``int`` holds is ``struct.error``, never wrapped.
pack_int = struct.Struct("=i").pack
#: A getter's buffer as C leaves it: the ``int`` value, then its length
#: (``socklen_t``; Windows' ``int`` length is never negative).
_PAIR = struct.Struct("=iI")


class Pair:
    """A getter's buffer: an ``int`` and its length, side by side, with their pointers."""

    __slots__ = ("array", "length_ref", "value_ref")

    def __init__(self) -> None:
        self.array = (ctypes.c_int * 2)(0, INT_SIZE)
        self.value_ref = ctypes.byref(self.array)
        self.length_ref = ctypes.byref(self.array, INT_SIZE)


class ThreadBuffers(threading.local):
    """A getter's :class:`Pair` per thread, and the ``getsockopt`` reading it.

    For the calls that release the GIL (the general path): another thread
    could write a shared buffer while the kernel writes it.  ``read`` is
    built on a thread's first call (:func:`decoding`), and the read at the
    call's return keeps a signal handler of the same thread out.
    """

    def __init__(self) -> None:
        self.pair = Pair()
        self.read: Optional[Callable[..., Tuple[int, int]]] = None


if TYPE_CHECKING:
    #: What :meth:`Backend.fast_functions` returns: ``setsockopt``, the
    #: decoding ``getsockopt`` and its buffer.
    FastFunctions = Tuple[Callable[..., int], Callable[..., Tuple[int, int]], Pair]


def decoding(function: Callable[..., int], pair: Pair) -> Callable[..., Tuple[int, int]]:
    """*function* (a ``getsockopt``) made to answer ``(value, length)`` read from *pair*.

    The read happens inside the call: a ctypes function's ``restype`` may be
    a callable, which ctypes applies to the C result before the interpreter
    runs another instruction of Python, so no signal handler (the
    interpreter runs them between instructions, in the thread they
    interrupt) and no other thread can use *pair* between the kernel's
    answer and its reading.  The callable is C as well (``unpack_from`` of
    *pair* at offset *result*): 0, success, reads the pair; any other
    result (-1) is an offset that cannot hold it, ``struct.error``, which
    the caller takes for a refusal and reads ``errno``.  A fresh function
    object carries the ``restype``, so the library's own is unchanged.  A
    stand-in library (the tests') gets the same contract in Python.
    """
    reader = functools.partial(_PAIR.unpack_from, pair.array)
    if isinstance(function, ctypes._CFuncPtr):  # type: ignore[attr-defined]
        address = ctypes.cast(function, ctypes.c_void_p).value or 0  # never NULL: a symbol
        fresh = type(function)(address)
        fresh.argtypes = function.argtypes  # None, or the library's own (Windows)
        fresh.restype = reader
        return fresh

    def read(*args: Any) -> Tuple[int, int]:
        return reader(function(*args))

    return read


def has_gil() -> bool:
    """Whether the interpreter runs one thread at a time (not a free-threaded build).

    The fast path shares one getter buffer between threads, which a ``PyDLL``
    call makes safe only while the GIL holds them back.
    """
    enabled = getattr(sys, "_is_gil_enabled", None)
    return enabled is None or bool(enabled())


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

    def fast_functions(self) -> Optional[FastFunctions]:
        """``(setsockopt, getsockopt, pair)`` for the public API's fast path.

        ``setsockopt`` with its C signature; ``getsockopt`` answering
        ``(value, length)`` from *pair* (:func:`decoding`), the buffer it
        must be given; ``None`` where the backend has no such path and every
        call goes through :meth:`set`/:meth:`get`.
        """
        return None
