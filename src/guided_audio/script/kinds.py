"""A value of a script read by its kind, as the grammar declares it (`grammar.Key.kind`):
durations, decibels, numbers and whole numbers in their ranges, choices, text, spoken text
and files. A key declared in the grammar is read here, with its bounds, in one place.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guided_audio.script import grammar as g
from guided_audio.script.grammar import MAX_PAUSE_S
from guided_audio.script.spoken import spoken_text
from guided_audio.script.values import (
    Problems,
    decibels,
    read_audio_file,
    read_choice,
    read_cover,
    read_duration,
    whole_number,
)
from guided_audio.script.yamlnode import BOOL, Node


@dataclass(frozen=True)
class Context:
    """What reading a value may need besides its node: the script's folder and variables."""

    base: Path
    variables: Mapping[str, str] = field(default_factory=dict)


def read_value(k: g.Key, node: Node, context: Context) -> Any:
    """A value of key `k`, read as its kind says, with the grammar's ranges and choices;
    raises a located problem (Invalid)."""
    what = k.said_as
    if k.kind == "duration":
        high = float(k.high or MAX_PAUSE_S)
        return read_duration(node, what, high, zero_ok=k.zero_ok, minimum=float(k.low or 0))
    if k.kind == "decibels":
        return decibels(node, what, float(k.low or 0), float(k.high or 0))
    if k.kind == "integer":
        return whole_number(node, what, int(k.low or 0), int(k.high or 0))
    if k.kind == "number":
        value = node.number(f"a {what} like {k.like}")
        low, high = float(k.low or 0), float(k.high or 0)
        if not low <= value <= high:
            node.fail(f"{what} must be from {low:g} to {high:g}, found {value:g}", k.hint)
        return value
    if k.kind == "choice":
        return read_choice(node, what, k.choices)
    if k.kind == "boolean":
        if node.tag != BOOL:
            node.fail(f"expected true or false for {what}, found {node.describe()}")
        return str(node.raw.value).lower() == "true"
    if k.kind == "text":
        return node.text(what)
    if k.kind == "said":
        return spoken_text(node, context.variables, what)
    if k.kind == "path":
        if k.image:
            return read_cover(node, context.base)
        return read_audio_file(node, context.base, what)
    raise ValueError(f"{k.name}: a {k.kind} is read by its own reader")


def read_keys(
    keys: tuple[g.Key, ...],
    fields: Mapping[str, tuple[Node, Node]],
    context: Context,
    p: Problems,
    names: tuple[str, ...],
) -> dict[str, Any]:
    """The values of the keys `names` that are there, by the model's attribute names;
    each problem is recorded and its key left out."""
    values: dict[str, Any] = {}
    for k in keys:
        if k.name in names and k.name in fields:
            with p.collect():
                values[k.attribute] = read_value(k, fields[k.name][1], context)
    return values
