"""What a `--length` may do to a step, as its author bounds it: a silence's `min`, `max`
and `flex`, a breathing practice's `min_cycles`, `max_cycles` and `flex`. Located errors
where they contradict the step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from guided_audio.script import grammar as g
from guided_audio.script.kinds import Context, read_value
from guided_audio.script.model import Bounds
from guided_audio.script.yamlnode import Node


def _bounded(
    keys: tuple[g.Key, ...],
    fields: dict[str, tuple[Node, Node]],
    names: tuple[str, str],
    natural: float,
    context: Context,
    contradicts: Callable[[str, Any], str],
) -> tuple[Any, Any, bool]:
    """The two bounds `names` a step gives (None where absent) and whether `flex: none`
    fixes it; a located error where a bound passes the step's own `natural` value."""
    read = {name: read_value(g.key(keys, name), fields[name][1], context)
            for name in (*names, "flex") if name in fields}  # fmt: skip
    low, high = read.get(names[0]), read.get(names[1])
    if low is not None and low > natural:
        fields[names[0]][1].fail(contradicts(names[0], low))
    if high is not None and high < natural:
        fields[names[1]][1].fail(contradicts(names[1], high))
    return low, high, read.get("flex") == "none"


def read_bounds(
    keys: tuple[g.Key, ...],
    fields: dict[str, tuple[Node, Node]],
    seconds: float,
    what: str,
    context: Context,
) -> Bounds:
    """A silence's `min`, `max` and `flex`: located errors where they contradict it."""

    def contradicts(name: str, value: float) -> str:
        side = "longer" if name == "min" else "shorter"
        return f"'{name}' is {value:g}s, {side} than {what} ({seconds:g}s)"

    low, high, fixed = _bounded(keys, fields, ("min", "max"), seconds, context, contradicts)
    return Bounds(low, high, fixed)


def read_cycle_range(
    fields: dict[str, tuple[Node, Node]], cycles: int, context: Context
) -> tuple[int, int] | None:
    """The whole cycles a --length may give a breathing practice: `min_cycles` and
    `max_cycles`, else the grammar's default share around a `for:`; None if it is fixed."""

    def contradicts(name: str, value: int) -> str:
        side = "more" if name == "min_cycles" else "fewer"
        return f"'{name}' is {value}, {side} than the {cycles} cycles"

    names = ("min_cycles", "max_cycles")
    low, high, fixed = _bounded(g.BREATHE, fields, names, cycles, context, contradicts)
    if fixed or (low is None and high is None and "for" not in fields):
        return None
    _, shortest, longest = g.STRETCH["breathe"]
    return (
        low if low is not None else max(1, math.ceil(cycles * shortest)),
        high if high is not None else max(cycles, math.floor(cycles * longest)),
    )
