"""The schema's range patterns against the validator's own reading: for durations and
decibels as people write them, a pattern matches exactly when `validate` accepts the value
in that range. Hypothesis writes the values and the ranges."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import yaml
from hypothesis import example, given, settings
from hypothesis import strategies as st

from guided_audio.errors import Invalid
from guided_audio.script import grammar
from guided_audio.script.patterns import decibels_pattern, duration_pattern
from guided_audio.script.values import DurationForm, decibels, duration_from_text
from guided_audio.script.yamlnode import Node

Bound = tuple[Fraction, bool]

# Bounds near the grammar's: every key's bounds, and fractions that repeat in some unit.
BOUNDS = sorted(
    {Fraction(b) for k in grammar.STEPS + grammar.VOICE + grammar.MUSIC + grammar.PATTERN
     + grammar.BREATHE + grammar.REFLECT for b in (k.low, k.high) if b is not None and b >= 0}
    | {Fraction(1, 3), Fraction(10), Fraction(59, 2), Fraction(7, 1000), Fraction(3601),
       Fraction(90), Fraction(1, 1000)}
)  # fmt: skip

number = st.builds(
    lambda zeros, whole, fraction: "0" * zeros + str(whole) + (f".{fraction}" if fraction else ""),
    st.integers(0, 2),
    st.one_of(st.integers(0, 12), st.integers(0, 4000), st.sampled_from([59, 60, 999, 1000])),
    st.one_of(st.none(), st.from_regex(r"\A[0-9]{1,5}\Z")),
)
unit = st.sampled_from(["h", "m", "s", "ms", "H", "M", "S", "Ms", "mS", "MS"])
space = st.sampled_from(["", "", " ", "  "])
part = st.builds(lambda n, a, u, b: f"{a}{n}{a}{u}{b}", number, space, unit, space)
written = st.one_of(
    number,
    st.lists(part, min_size=1, max_size=4).map("".join),
    st.builds(lambda s, d: f"{s}{d}{s}", space, number),
)


def accepted(text: str, ranges: list[tuple[Bound, Bound]]) -> bool:
    try:
        value = duration_from_text(text)
    except DurationForm:
        return False
    if value is None:
        return False
    return any(
        (lo[0] < value or (lo[1] and lo[0] == value))
        and (value < hi[0] or (hi[1] and hi[0] == value))
        for lo, hi in ranges
    )


bound = st.tuples(st.sampled_from(BOUNDS), st.booleans())


@settings(max_examples=1500, deadline=None)
@given(written, bound, bound)
@example("1m90s", (Fraction(0), False), (Fraction(3600), True))
@example("1.5m30s", (Fraction(0), False), (Fraction(3600), True))
@example("59m59.999s", (Fraction(0), False), (Fraction(3600), True))
@example("0.1666666m", (Fraction(0), True), (Fraction(10), True))
@example("0.1666667m", (Fraction(0), True), (Fraction(10), True))
@example("0.5s", (Fraction(1, 2), True), (Fraction(120), True))
@example("0.49999s", (Fraction(1, 2), True), (Fraction(120), True))
@example("1h0.0001s", (Fraction(0), False), (Fraction(3600), True))
@example("30m1800s", (Fraction(0), False), (Fraction(3600), True))
def test_a_duration_pattern_matches_what_the_validator_accepts(
    text: str, a: Bound, b: Bound
) -> None:
    low, high = sorted([a, b])
    pattern = duration_pattern([(low, high)])
    assert bool(re.fullmatch(pattern, text)) == accepted(text, [(low, high)]), (text, low, high)


@settings(max_examples=300, deadline=None)
@given(written)
def test_zero_or_a_breath_phase(text: str) -> None:
    """hold and rest: 0, or from 0.5 s to 2 minutes."""
    zero = (Fraction(0), True)
    ranges = [(zero, zero), ((Fraction(1, 2), True), (Fraction(120), True))]
    assert bool(re.fullmatch(duration_pattern(ranges), text)) == accepted(text, ranges), text


signed = st.builds(
    lambda sign, n, s, db: f"{sign}{n}{s}{db}",
    st.sampled_from(["", "-", "+"]),
    number,
    space,
    st.sampled_from(["", "dB", "db", "DB", "d"]),
)


@settings(max_examples=800, deadline=None)
@given(signed, st.sampled_from([(-60, 0), (0, 40), (-12, 6), (-2.5, 2.5)]))
def test_a_decibels_pattern_matches_what_the_validator_accepts(
    text: str, limits: tuple[float, float]
) -> None:
    low, high = limits
    document = yaml.compose(f"level: {json.dumps(text)}")
    assert document is not None
    node = Node(document.value[0][1], "probe.yaml")
    try:
        decibels(node, "level", low, high)
        expected = True
    except Invalid:
        expected = False
    assert bool(re.fullmatch(decibels_pattern(low, high), text)) == expected, text
