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
    from typing import Callable, Iterable, List, Tuple, Union

    from .constants import Option

    #: A duration: milliseconds as ``int`` or ``float``, or a ``timedelta``.
    Milliseconds = Union[int, float, timedelta]

__all__ = ["Milliseconds", "from_native", "ms_per_unit", "plan", "range_text", "to_native"]


def __getattr__(name: str) -> object:
    """``Milliseconds``, built on first access (it needs ``typing``)."""
    if name == "Milliseconds":
        from datetime import timedelta
        from typing import Union

        alias = Union[int, float, timedelta]
        globals()["Milliseconds"] = alias
        return alias
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _ms(opt: Option, value: object, label: str) -> Union[int, float]:
    """*value* as a number of milliseconds (``TypeError`` for non-durations)."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        raise TypeError(f"{label}: expected milliseconds (int, float or timedelta), got bool")
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{label}: {value!r} is not a finite number; {range_text(opt)}")
        return value
    from datetime import timedelta  # a timedelta needs it loaded anyway

    if isinstance(value, timedelta):
        # Exact integer arithmetic; a float of total_seconds() could round.
        return value // timedelta(milliseconds=1)
    raise TypeError(
        f"{label}: expected milliseconds (int, float or timedelta), got {type(value).__name__}"
    )


#: Milliseconds per native unit, by ``Unit`` value, for the time units
#: that are not milliseconds (seconds, NetBSD's 500 ms ticks).
_MS_PER = {"s": 1000, "500 ms ticks": 500}


def _shown(value: object) -> str:
    return f"{value!r} ms" if isinstance(value, (int, float)) else repr(value)


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

    Seconds options get the milliseconds truncated to whole seconds, as
    Node's net-keepalive does (1500 ms -> 1 s).  A non-zero time that
    truncates to 0, or any value outside the option's range, is a
    ``ValueError``; nothing is ever wrapped to fit a C ``int``.
    """
    from .constants import Unit  # loaded with the backend, before any call

    unit = opt.unit
    if unit is Unit.COUNT:
        if type(value) is not int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label}: expected an int, got {type(value).__name__}")
            value = int(value)
        native = value
    else:
        ms = _ms(opt, value, label)
        if ms < 0:
            raise ValueError(f"{label}: {_shown(value)} is negative; {range_text(opt)}")
        native = int(ms // _MS_PER.get(unit.value, 1))
        if native == 0 and ms > 0:
            tick = "one second" if unit is Unit.SECONDS else "one 500 ms tick"
            raise ValueError(f"{label}: {_shown(value)} is less than {tick}; {range_text(opt)}")
    if opt.minimum <= native <= opt.maximum:
        return native
    shown = f"{value!r}" if unit is Unit.COUNT else _shown(value)
    raise ValueError(f"{label}: {shown} is out of range; {range_text(opt)}")


def plan(
    option: Callable[[str], Option], given: Iterable[Tuple[str, object]]
) -> List[Tuple[str, Option, object, int]]:
    """``(knob, option, value, native)`` for each ``(knob, value)`` not ``None``.

    In the order given; *option* maps a knob to its option or raises
    :class:`~netkeepalive.UnsupportedOptionError`
    (:meth:`~netkeepalive._sys.base.Backend.option`).  Every value is
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
