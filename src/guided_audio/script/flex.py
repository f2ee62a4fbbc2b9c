"""What a `--length` may do to a step, as its author bounds it: a silence's `min`, `max`
and `flex`, a breathing practice's `min_cycles`, `max_cycles` and `flex`. Located errors
where they contradict the step.
"""

from __future__ import annotations

import math

from guided_audio.script import grammar as g
from guided_audio.script.kinds import Context, read_value
from guided_audio.script.model import Bounds
from guided_audio.script.yamlnode import Node


def read_bounds(
    keys: tuple[g.Key, ...],
    fields: dict[str, tuple[Node, Node]],
    seconds: float,
    what: str,
    context: Context,
) -> Bounds:
    """A silence's `min`, `max` and `flex`: located errors where they contradict it."""
    read = {name: read_value(g.key(keys, name), fields[name][1], context)
            for name in ("min", "max", "flex") if name in fields}  # fmt: skip
    low, high = read.get("min"), read.get("max")
    if low is not None and low > seconds:
        fields["min"][1].fail(f"'min' is {low:g}s, longer than {what} ({seconds:g}s)")
    if high is not None and high < seconds:
        fields["max"][1].fail(f"'max' is {high:g}s, shorter than {what} ({seconds:g}s)")
    return Bounds(low, high, read.get("flex") == "none")


def read_cycle_range(
    fields: dict[str, tuple[Node, Node]], cycles: int, context: Context
) -> tuple[int, int] | None:
    """The whole cycles a --length may give a breathing practice: `min_cycles` and
    `max_cycles`, else the grammar's default share around a `for:`; None if it is fixed."""
    read = {name: read_value(g.key(g.BREATHE, name), fields[name][1], context)
            for name in ("min_cycles", "max_cycles", "flex") if name in fields}  # fmt: skip
    low, high = read.get("min_cycles"), read.get("max_cycles")
    if low is not None and low > cycles:
        fields["min_cycles"][1].fail(f"'min_cycles' is {low}, more than the {cycles} cycles")
    if high is not None and high < cycles:
        fields["max_cycles"][1].fail(f"'max_cycles' is {high}, fewer than the {cycles} cycles")
    if read.get("flex") == "none" or (low is None and high is None and "for" not in fields):
        return None
    _, shortest, longest = g.STRETCH["breathe"]
    return (
        low if low is not None else max(1, math.ceil(cycles * shortest)),
        high if high is not None else max(cycles, math.floor(cycles * longest)),
    )
