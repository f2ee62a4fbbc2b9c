"""Properties of the length solver (plan/fit.py), checked with Hypothesis on sessions of
realistic size (silences up to two minutes at 44.1 kHz, bounds from half to four times
natural, tiers 1 and 2, breathing practices in whole cycles of 9, 11, 16 or 19 s):

- every length is within its element's bounds, and a practice takes one of its choices;
- the total is exact, to the sample, for every change within `reach`, when the continuous
  elements have room for at least one cycle each way (else whole cycles can leave a target
  unreachable); outside `reach` it is OutOfReach;
- the same elements and change give the same lengths, whatever sequence holds them;
- a larger change never shortens a practice, nor a continuous element (by more than the
  sample that rounding may take) while the practices keep their lengths;
- the highest tier takes the change first: while it can absorb it, lower tiers stay natural;
- within one tier, away from the bounds, the change is shared in proportion to the naturals;
- no change gives the naturals.

Only the module's public names are used. Example counts are modest (each test well under
5 s on two cores); a long run: GUIDED_AUDIO_FIT_EXAMPLES=5000.
"""

from __future__ import annotations

import os
from dataclasses import replace
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import cli
from guided_audio.dsp.effects import RATE, seconds_to_samples
from guided_audio.plan.builder import OutOfRange, build, estimate_speech
from guided_audio.plan.fit import OutOfReach, Stretch, fit, reach
from guided_audio.script.loader import load_script

MAX_NATURAL = RATE * 120  # two minutes
CYCLE_S = (11, 16, 19, 9)
EXAMPLES = int(os.environ.get("GUIDED_AUDIO_FIT_EXAMPLES", "150"))
FEW = settings(max_examples=EXAMPLES, deadline=None)

Case = tuple[list[Stretch], int]


# Strategies ---------------------------------------------------------------------------


@st.composite
def silences(draw: st.DrawFn, tier: int | None = None) -> Stretch:
    """A continuous element: any length from half to four times its natural one."""
    natural = draw(st.integers(0, MAX_NATURAL))
    low = natural - draw(st.integers(0, natural // 2))
    high = natural + draw(st.integers(0, 3 * natural))
    return Stretch(natural, low, high, draw(st.integers(1, 2)) if tier is None else tier)


def practice(cycle_s: float, lo: int, count: int, hi: int, tier: int) -> Stretch:
    """A breathing practice: whole cycles from `lo` to `hi`, naturally `count` of them."""
    choices = tuple(round(k * RATE * cycle_s) for k in range(lo, hi + 1))
    return Stretch(round(count * RATE * cycle_s), choices[0], choices[-1], tier, choices)


@st.composite
def practices(draw: st.DrawFn, tier: int | None = None) -> Stretch:
    cycle_s = draw(st.sampled_from(CYCLE_S))
    lo = draw(st.integers(1, 6))
    count = draw(st.integers(lo, lo + 6))
    hi = draw(st.integers(count, count + 12))
    return practice(cycle_s, lo, count, hi, draw(st.integers(1, 2)) if tier is None else tier)


def step(element: Stretch) -> int:
    """The largest move between neighbouring choices (0 for a continuous element)."""
    return max((b - a for a, b in pairwise(element.choices)), default=0)


@st.composite
def sessions(draw: st.DrawFn, roomy: bool = False) -> list[Stretch]:
    """Up to eight elements, up to three of them practices, in any order. `roomy`: the
    continuous elements can take at least the largest cycle step both ways (a gap is added
    when they cannot), so whole cycles never leave a target within reach unreachable."""
    elements = draw(st.lists(silences(), min_size=0 if roomy else 1, max_size=6))
    elements += draw(st.lists(practices(), max_size=3))
    need = max((step(e) for e in elements), default=0)
    shorter, longer = reach([e for e in elements if not e.choices])
    if roomy and min(shorter, longer) < need:
        gap = Stretch(2 * need, need, 3 * need, draw(st.integers(1, 2)))
        elements.insert(draw(st.integers(0, len(elements))), gap)
    return list(draw(st.permutations(elements)))


def within(elements: list[Stretch]) -> st.SearchStrategy[int]:
    """A change within reach, its ends often."""
    shorter, longer = reach(elements)
    return st.one_of(st.integers(-shorter, longer), st.sampled_from([-shorter, 0, longer]))


@st.composite
def cases(draw: st.DrawFn, roomy: bool = False) -> Case:
    elements = draw(sessions(roomy))
    return elements, draw(within(elements))


def naturals(elements: list[Stretch]) -> int:
    return sum(e.natural for e in elements)


# Properties ---------------------------------------------------------------------------


@FEW
@given(cases())
def test_every_length_is_within_its_bounds(case: Case) -> None:
    """low <= length <= high, and a practice takes one of its choices. (Any session: where
    whole cycles leave the target unreachable the solver may say so; the exact total is the
    next test's, on sessions with room.)"""
    elements, change = case
    try:
        lengths = fit(elements, change)
    except OutOfReach:
        return
    assert len(lengths) == len(elements)
    for element, length in zip(elements, lengths, strict=True):
        assert element.low <= length <= element.high, (element, length)
        if element.choices:
            assert length in element.choices, (element, length)


@FEW
@given(cases(roomy=True))
# The silence frozen at its shortest, the practice's share (2.0 cycles less a sample) rounds
# to 2: one sample more than the silence can give. It takes 1 cycle (was: OutOfReach).
@example(([Stretch(970200, 485100, 1455300, 1), practice(11, 1, 5, 5, 1)], -1940401))
def test_the_total_is_exact_within_reach(case: Case) -> None:
    """With room in the continuous elements for a cycle's step each way, every change within
    [-shorter, longer] is met to the sample, within the bounds."""
    elements, change = case
    lengths = fit(elements, change)
    assert sum(lengths) == naturals(elements) + change
    for element, length in zip(elements, lengths, strict=True):
        assert element.low <= length <= element.high, (element, length)
        if element.choices:
            assert length in element.choices, (element, length)


@FEW
@given(sessions(), st.integers(1, 10 * MAX_NATURAL), st.booleans())
def test_beyond_reach_is_out_of_reach(elements: list[Stretch], past: int, up: bool) -> None:
    shorter, longer = reach(elements)
    assert shorter == sum(e.natural - e.low for e in elements) >= 0
    assert longer == sum(e.high - e.natural for e in elements) >= 0
    change = longer + past if up else -shorter - past
    with pytest.raises(OutOfReach):
        fit(elements, change)


@FEW
@given(cases())
def test_the_same_inputs_give_the_same_lengths(case: Case) -> None:
    """Twice, and from copies held in a list or a tuple: the same lengths (or OutOfReach
    both times)."""

    def attempt(elements: list[Stretch] | tuple[Stretch, ...]) -> list[int] | None:
        try:
            return fit(elements, change)
        except OutOfReach:
            return None

    elements, change = case
    first = attempt(elements)
    assert attempt(elements) == first
    assert attempt([replace(e) for e in elements]) == first
    assert attempt(tuple(elements)) == first
    assert attempt(list(elements)) == first


@st.composite
def change_pairs(draw: st.DrawFn) -> tuple[list[Stretch], int, int]:
    """A roomy session and two changes within reach, the first smaller: often by a few
    samples only, where rounding decides."""
    elements = draw(sessions(roomy=True))
    shorter, longer = reach(elements)
    if shorter + longer == 0:
        return elements, 0, 0
    first = draw(st.integers(-shorter, longer - 1))
    gap = st.one_of(st.integers(1, 3), st.integers(1, longer - first))
    return elements, first, min(longer, first + draw(gap))


@FEW
@given(change_pairs())
# Counterexamples found on the way to the solver's present order of moving cycles when the
# silences cannot carry what rounding left: the highest tier first ...
@example(
    (
        [
            Stretch(970200, 485100, 1455300, 2),
            practice(11, 1, 1, 2, 1),
            practice(11, 1, 1, 2, 2),
        ],
        485101,
        727651,
    )
)
# ... then the share per weight at which each rounds to its next choice ...
@example(
    (
        [
            Stretch(1411200, 705600, 2116800, 2),
            practice(11, 1, 1, 2, 1),
            practice(16, 1, 3, 4, 1),
        ],
        705601,
        1057209,
    )
)
# ... compared exactly (equal in rationals, not in floats) ...
@example(
    (
        [
            Stretch(1675800, 837900, 2513700, 1),
            practice(11, 1, 3, 3, 1),
            practice(11, 1, 5, 5, 2),
            practice(19, 1, 7, 7, 1),
        ],
        -6331675,
        -6331674,
    )
)
# ... ties by position, in reverse when moving back ...
@example(
    ([Stretch(970200, 485100, 1455300, 1)] + [practice(11, 2, 8, 10, 1)] * 3, 1940401, 2364863)
)
# ... and back no further than natural.
@example(
    (
        [
            practice(19, 3, 8, 16, 2),
            practice(19, 2, 7, 18, 2),
            Stretch(1675800, 837900, 2513700, 1),
            practice(16, 3, 7, 10, 1),
            practice(9, 5, 7, 12, 1),
            practice(16, 3, 6, 15, 2),
        ],
        15158048,
        15871087,
    )
)
def test_a_larger_change_shortens_nothing(case: tuple[list[Stretch], int, int]) -> None:
    """For c1 < c2: no practice is shorter at c2. A continuous element is not shorter at c2
    either WHEN every practice has the same length at both: a practice that takes one cycle
    more at c2 takes that cycle's length back from the silences, which then may be shorter
    than at c1, so monotonicity of the silences across a cycle jump is impossible.

    Up to one sample: the real shares grow with the change, but rounding them to samples by
    largest remainders (Hamilton's method) can take a sample from an element when the change
    grows (the Alabama paradox; pinned below). Each length is its share's floor or one more,
    so it never falls more than one sample."""
    elements, c1, c2 = case
    before, after = fit(elements, c1), fit(elements, c2)
    cycles = [i for i, e in enumerate(elements) if e.choices]
    for i in cycles:
        assert after[i] >= before[i], (i, before[i], after[i])
    if all(after[i] == before[i] for i in cycles):
        for i, element in enumerate(elements):
            if not element.choices:
                assert after[i] >= before[i] - 1, (i, before[i], after[i])


@pytest.mark.xfail(strict=True, reason="largest remainders are not monotone (Alabama paradox)")
def test_one_more_sample_shortens_no_silence() -> None:
    """Silences of 6, 6 and 2 s: a change of 10 samples shares 4.29, 4.29 and 1.43, the last
    rounded up for the largest remainder; 11 shares 4.71, 4.71 and 1.57, and the two larger
    remainders take both spare samples: the 2 s silence is one sample shorter at 11 than at
    10. Strict once the rounding is monotone (a divisor method, for instance)."""
    elements = [Stretch(s * RATE, s * RATE // 2, s * RATE * 4, 2) for s in (6, 6, 2)]
    before, after = fit(elements, 10), fit(elements, 11)
    assert all(b >= a for a, b in zip(before, after, strict=True)), (before, after)


@st.composite
def tiered(draw: st.DrawFn) -> Case:
    """Tier 2 (continuous and practices) over tier 1 (anything), and a change that tier 2's
    continuous elements alone can absorb, whatever the practices' rounding leaves them: they
    can take every tier-2 cycle step both ways, and the change besides."""
    top = draw(st.lists(silences(tier=2), max_size=4))
    top += draw(st.lists(practices(tier=2), max_size=2))
    need = sum(step(e) for e in top)
    shorter, longer = reach([e for e in top if not e.choices])
    if min(shorter, longer) < need:
        top.append(Stretch(2 * need, need, 3 * need, 2))
    shorter, longer = reach([e for e in top if not e.choices])
    change = draw(st.integers(-(shorter - need), longer - need))
    below = draw(st.lists(st.one_of(silences(tier=1), practices(tier=1)), max_size=4))
    return list(draw(st.permutations(top + below))), change


@FEW
@given(tiered())
def test_lower_tiers_wait_for_the_highest(case: Case) -> None:
    elements, change = case
    lengths = fit(elements, change)
    assert sum(lengths) == naturals(elements) + change
    for element, length in zip(elements, lengths, strict=True):
        if element.tier == 1:
            assert length == element.natural, (element, length)


@st.composite
def one_tier(draw: st.DrawFn) -> Case:
    """Continuous elements of one tier, and a change that freezes none of them at a bound."""
    tier = draw(st.integers(1, 2))
    elements = draw(st.lists(silences(tier=tier), min_size=1, max_size=6))
    total = naturals(elements)
    if total == 0:
        return elements, 0
    # Each element's share, change * natural / total, must stay short of its room.
    up = min((e.high - e.natural) * total // e.natural for e in elements if e.natural)
    down = min((e.natural - e.low) * total // e.natural for e in elements if e.natural)
    return elements, draw(st.integers(-max(0, down - 1), max(0, up - 1)))


@FEW
@given(one_tier())
def test_shares_follow_the_naturals(case: Case) -> None:
    """Each element's change is change * natural / sum(naturals), to a sample (rounding)."""
    elements, change = case
    lengths = fit(elements, change)
    total = naturals(elements)
    assert sum(lengths) == total + change
    for element, length in zip(elements, lengths, strict=True):
        share = change * element.natural / total if total else 0.0
        assert abs(length - element.natural - share) < 1 + 1e-6, (element, length, share)


@FEW
@given(sessions())
def test_no_change_gives_the_naturals(elements: list[Stretch]) -> None:
    assert fit(elements, 0) == [e.natural for e in elements]


def test_a_length_whole_cycles_cannot_meet_is_a_clear_answer(tmp_path: Path) -> None:
    """Inside the range, but between two whole cycles with no silence to carry the rest:
    one line, exit 2, no traceback."""
    script = tmp_path / "cycles.yaml"
    script.write_text(
        "title: Cycles\nvoice: {gap: 0}\nsections:\n  - title: A\n    steps:\n"
        "      - breathe: {pattern: box, for: 48s, cues: tone, min_cycles: 2, max_cycles: 4}\n",
        encoding="utf-8",
    )
    natural = build(load_script(script), estimate_speech, lambda _: 0).total
    between = natural + seconds_to_samples(8)  # half a 16 s cycle more
    with pytest.raises(OutOfRange) as caught:
        build(load_script(script), estimate_speech, lambda _: 0, between)
    assert caught.value.whole_cycles
    assert caught.value.shortest < between < caught.value.longest
    result = cli("plan", str(script), "--estimate", "--length", f"{between / RATE:.6f}")
    assert result.exit_code == 2, result.output
    assert "whole breath cycles cannot make it exactly that long" in result.stderr
    assert "Traceback" not in result.output
