"""Names every layer shares: the knobs, and release numbers read as tuples."""

from __future__ import annotations

__all__ = ["KNOBS", "VALUE_KNOBS", "version_tuple"]

#: Every knob, in table order: ``SO_KEEPALIVE`` and the four values.
KNOBS = ("enable", "idle", "interval", "probes", "user_timeout")
#: The knobs that take a time in ms or a count: every knob but ``enable``.
VALUE_KNOBS = KNOBS[1:]


def version_tuple(text: str) -> tuple[int, ...]:
    """The leading ``major[.minor]`` of a release string, as integers (``()`` if none)."""
    import re

    m = re.match(r"(\d+)(?:\.(\d+))?", text)
    if not m:
        return ()
    return tuple(int(part) for part in m.groups() if part is not None)
