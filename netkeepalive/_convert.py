"""Validation and unit conversion between the public API and the kernel.

The public API speaks milliseconds (times) and counts; each
:class:`~netkeepalive.constants.Option` says what its kernel takes.  Every
value is checked here, before anything reaches C, so a bad argument raises
``TypeError``/``ValueError`` and changes nothing.
"""

from __future__ import annotations

import math

# Neither ``typing`` nor ``datetime`` nor the option tables are imported at
# run time until needed: this module is part of ``import netkeepalive``.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from datetime import timedelta
    from typing import Callable, Iterable, List, Optional, Tuple, Union

    from .constants import Option

    #: A duration: milliseconds as ``int`` or ``float``, or a ``timedelta``.
    Milliseconds = Union[int, float, timedelta]

__all__ = [
    "Milliseconds",
    "budget_ms",
    "check_enable",
    "from_native",
    "ms_per_unit",
    "plan",
    "public_value",
    "range_text",
    "to_native",
]


def __getattr__(name: str) -> object:
    """``Milliseconds``, built on first access (it needs ``typing``)."""
    if name == "Milliseconds":
        from datetime import timedelta
        from typing import Union

        alias = Union[int, float, timedelta]
        globals()["Milliseconds"] = alias
        return alias
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _time(opt: Option, value: object, label: str, per_unit: int) -> Tuple[int, bool]:
    """*value* (ms) as ``(whole units, more than zero)``; *per_unit* is ms per unit.

    The whole units are truncated towards zero, exactly: a ``timedelta``
    counts its microseconds, so 500 µs is more than zero although it is 0
    whole milliseconds.  ``TypeError`` for what is not a duration,
    ``ValueError`` for a negative or non-finite one.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        ms = int.__index__(value)  # an int subclass (IntEnum...) is the int it equals
        if ms >= 0:
            return ms // per_unit, ms > 0
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{label}: {value!r} is not a finite number; {range_text(opt)}")
        if value >= 0:
            return int(value // per_unit), value > 0
    else:
        from datetime import timedelta  # a timedelta needs it loaded anyway

        if not isinstance(value, timedelta):
            kind = type(value).__name__
            raise TypeError(f"{label}: expected milliseconds (int, float or timedelta), got {kind}")
        # Exact integer arithmetic; a float of total_seconds() could round.
        us = value // timedelta(microseconds=1)
        if us >= 0:
            return us // (per_unit * 1000), us > 0
    raise ValueError(f"{label}: {_shown(value)} is negative; {range_text(opt)}")


#: Milliseconds per native unit, by ``Unit`` value, for the time units
#: that are not milliseconds (seconds, NetBSD's 500 ms ticks).
_MS_PER = {"s": 1000, "500 ms ticks": 500}
#: One native unit, in words, by ``Unit`` value (error messages).
_ONE = {"s": "one second", "500 ms ticks": "one 500 ms tick", "ms": "one millisecond"}


def _shown(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{int.__index__(value)!r} ms"
    return f"{value!r} ms" if isinstance(value, float) else repr(value)


def range_text(opt: Option) -> str:
    """The accepted range of *opt*, in the public API's units."""
    from .constants import Unit

    if opt.unit is Unit.SECONDS:
        return (
            f"{opt.name} takes {opt.minimum} to {opt.maximum} whole seconds "
            f"({opt.minimum * 1000} to {opt.maximum * 1000 + 999} ms; "
            "milliseconds are truncated to whole seconds)"
        )
    if opt.unit is Unit.HALF_SECONDS:
        return (
            f"{opt.name} takes {opt.minimum} to {opt.maximum} ticks of 500 ms "
            f"({opt.minimum * 500} to {opt.maximum * 500 + 499} ms; "
            "milliseconds are truncated to whole 500 ms ticks)"
        )
    if opt.unit is Unit.MILLISECONDS:
        return f"{opt.name} takes {opt.minimum} to {opt.maximum} ms"
    return f"{opt.name} takes {opt.minimum} to {opt.maximum}"


def to_native(opt: Option, value: object, label: str) -> int:
    """*value* (ms or a count) as the ``int`` the kernel takes for *opt*.

    Times are truncated to whole units of the option: seconds options get
    the milliseconds truncated to whole seconds, as Node's net-keepalive
    does (1500 ms -> 1 s), milliseconds options lose fractions of a
    millisecond (``timedelta(microseconds=1500)`` -> 1 ms).  A non-zero time
    that truncates to 0 (``timedelta(microseconds=500)`` for milliseconds),
    or any value outside the option's range, is a ``ValueError``: only a
    true zero is 0.  An ``int`` subclass (``IntEnum``) counts as the ``int``
    it equals; ``bool`` is not a number here.  Nothing is ever wrapped to
    fit a C ``int``.
    """
    from .constants import Unit  # loaded with the backend, before any call

    unit = opt.unit
    if unit is Unit.COUNT:
        if type(value) is not int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label}: expected an int, got {type(value).__name__}")
            value = int.__index__(value)  # an int subclass (IntEnum...) is the int it equals
        native = value
        shown = repr(value)
    else:
        native, positive = _time(opt, value, label, _MS_PER.get(unit.value, 1))
        if native == 0 and positive:
            raise ValueError(
                f"{label}: {_shown(value)} is less than {_ONE.get(unit.value, 'one millisecond')}, "
                f"the unit of {opt.name}; {range_text(opt)}"
            )
        shown = _shown(value)
    if opt.minimum <= native <= opt.maximum:
        return native
    raise ValueError(f"{label}: {shown} is out of range; {range_text(opt)}")


def plan(
    option: Callable[[str], Option], given: Iterable[Tuple[str, object]]
) -> List[Tuple[str, Option, object, int]]:
    """``(knob, option, value, native)`` for each ``(knob, value)`` not ``None``.

    In the order given; *option* maps a knob to its option or raises
    :class:`~netkeepalive.UnsupportedOptionError`
    (:meth:`~netkeepalive._backends.base.Backend.option`).  Every value is
    checked by :func:`to_native` before the list is returned, so the first
    bad one raises and nothing has reached the kernel.
    """
    planned: List[Tuple[str, Option, object, int]] = []
    for knob, value in given:
        if value is not None:
            opt = option(knob)
            planned.append((knob, opt, value, to_native(opt, value, knob)))
    return planned


def ms_per_unit(opt: Option) -> int:
    """Milliseconds in one unit of *opt*'s kernel value (1 for ms and counts)."""
    return _MS_PER.get(opt.unit.value, 1)


def from_native(opt: Option, native: int) -> int:
    """A kernel value of *opt* in the public API's unit (ms or a count)."""
    return native * _MS_PER.get(opt.unit.value, 1)


def budget_ms(ms: object, label: str) -> int:
    """A detection budget *ms* (``int``, ``float`` or ``timedelta``) in whole ms, 1 and up.

    Fractions of a millisecond are truncated; a non-zero budget under one
    millisecond (``0.5``, ``timedelta(microseconds=500)``) is a
    ``ValueError`` that says so, as are 0 and negative budgets.
    """
    from datetime import timedelta

    if isinstance(ms, bool):
        raise TypeError(f"{label}: expected milliseconds (int, float or timedelta), got bool")
    if isinstance(ms, int):
        value, positive = int(ms), ms > 0
    elif isinstance(ms, float):
        if not math.isfinite(ms):
            raise ValueError(f"{label}: {ms!r} is not a finite number of milliseconds")
        value, positive = math.floor(ms), ms > 0
    elif isinstance(ms, timedelta):
        value, positive = ms // timedelta(milliseconds=1), ms > timedelta(0)
    else:
        raise TypeError(
            f"{label}: expected milliseconds (int, float or timedelta), got {type(ms).__name__}"
        )
    if value <= 0 and positive:
        raise ValueError(
            f"{label}: {_shown(ms)} is less than one millisecond; the budget takes "
            "whole milliseconds, 1 and up"
        )
    if value <= 0:
        raise ValueError(f"{label}: the budget must be positive, got {ms!r}")
    return value


def check_enable(enable: object, label: str = "enable") -> bool:
    """*enable*, which must be a ``bool`` (``TypeError`` names *label*)."""
    if type(enable) is not bool:
        raise TypeError(f"{label}: expected a bool, got {type(enable).__name__}")
    return enable


def public_value(opt: Option, native: int) -> Optional[int]:
    """*native* in the public unit; ``None`` where the kernel's 0 means "never set"."""
    return None if native == 0 and opt.zero_is_unset else from_native(opt, native)
