"""The exceptions netkeepalive raises besides ``TypeError`` and ``ValueError``."""

from __future__ import annotations

import errno as _errno
import os

__all__ = ["LibraryNotFoundError", "SocketOptionError", "UnsupportedOptionError"]


class SocketOptionError(OSError):
    """A socket-option call failed; ``errno`` and ``strerror`` are the kernel's.

    ``call`` is the C function (``"setsockopt"``, ``"getsockopt"``,
    ``"WSAIoctl"``) and ``option`` the C name of the option, so that
    ``str(exc)`` reads e.g.
    ``setsockopt(TCP_KEEPINTVL): [Errno 9] Bad file descriptor``.

    When the refused call was one of several writes of one entry point
    (:func:`~netkeepalive.configure`, ``set_keepalive(sock, True, delay)``),
    ``during`` names that entry point and ``outcome`` says what the
    refusal left behind, after every option already written was written
    back: ``"nothing was changed"``, or which option is left changed and
    why.  ``str(exc)`` then reads e.g. ``configure: setsockopt(TCP_KEEPINTVL):
    [Errno 1] Operation not permitted; nothing was changed``.
    """

    call: str = ""
    option: str = ""
    during: str = ""
    outcome: str = ""

    def _framed(self, text: str) -> str:
        """*text* with :attr:`during` before it and :attr:`outcome` after it."""
        if self.during:
            text = f"{self.during}: {text}"
        return f"{text}; {self.outcome}" if self.outcome else text

    @classmethod
    def from_errno(cls, err: int, call: str, option: str) -> SocketOptionError:
        """The error for C *call* on *option* that failed with errno *err*."""
        exc = cls(err, os.strerror(err))
        exc.call = call
        exc.option = option
        return exc

    def __str__(self) -> str:
        return self._framed(f"{self.call}({self.option}): [Errno {self.errno}] {self.strerror}")


class UnsupportedOptionError(SocketOptionError):
    """The running platform has no socket option for this knob.

    ``errno`` is ``ENOPROTOOPT``; nothing was passed to the kernel.
    """

    platform: str = ""

    @classmethod
    def for_knob(cls, knob: str, platform: str, detail: str = "") -> UnsupportedOptionError:
        """The error for *knob* (``"probes"``, ...) missing on *platform*."""
        exc = cls(_errno.ENOPROTOOPT, os.strerror(_errno.ENOPROTOOPT))
        exc.call = "setsockopt"
        exc.option = knob
        exc.platform = platform
        exc.detail = detail
        return exc

    detail: str = ""

    def __str__(self) -> str:
        text = (
            f"{self.option}: not supported on {self.platform} [Errno {self.errno}] {self.strerror}"
        )
        return self._framed(f"{text} ({self.detail})" if self.detail else text)


class LibraryNotFoundError(OSError):
    """The C library (or ``ws2_32`` on Windows) could not be loaded."""
