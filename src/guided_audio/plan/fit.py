"""Fitting a session to a length: how much each stretchable element of a timeline (a pause,
a reflection's silence, a breathing practice in whole cycles, the gaps) gives or takes so
the total is a target, exactly, in samples.

Like TeX's glue orders, elements come in tiers: the highest tier takes the change first,
the next only what the first cannot. Within a tier the change is shared by weight (an
element's natural length), and an element that would pass its bound is frozen there while
the rest is shared again, as CSS flexbox resolves flexible lengths (css-flexbox-1, 9.7).
A breathing practice changes by whole cycles: its share is rounded to the nearest whole
count, and what rounding leaves is shared among the continuous silences. Pure arithmetic:
the same elements and target give the same lengths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Stretch:
    """One element that can change length. `choices`, if given, are the only lengths it can
    have (a breathing practice's whole cycles), ascending; else any length in [low, high]."""

    natural: int
    low: int
    high: int
    tier: int
    choices: tuple[int, ...] = ()

    @property
    def weight(self) -> int:
        return self.natural


class OutOfReach(ValueError):
    """The target is below the shortest or above the longest the elements allow."""


def reach(elements: Sequence[Stretch]) -> tuple[int, int]:
    """How much shorter and longer than natural (both >= 0) the elements can make a session."""
    shorter = sum(e.natural - e.low for e in elements)
    longer = sum(e.high - e.natural for e in elements)
    return shorter, longer


def _share(elements: Sequence[Stretch], change: float) -> list[float]:
    """Continuous changes summing to `change` (as far as bounds allow): tier by tier, by
    weight, freezing at bounds and sharing again."""
    out = [0.0] * len(elements)
    left = change
    for tier in sorted({e.tier for e in elements}, reverse=True):
        active = [
            i for i, e in enumerate(elements)
            if e.tier == tier and e.weight > 0 and (e.high if left > 0 else e.low) != e.natural
        ]  # fmt: skip
        while abs(left) > 1e-9 and active:
            total = sum(elements[i].weight for i in active)
            frozen = []
            for i in active:
                e = elements[i]
                room = (e.high if left > 0 else e.low) - e.natural - out[i]
                if abs(left * e.weight / total) >= abs(room):
                    frozen.append((i, room))
            if not frozen:
                for i in active:
                    out[i] += left * elements[i].weight / total
                left = 0.0
                break
            for i, room in frozen:
                out[i] += room
                left -= room
                active.remove(i)
    return out


def _whole(values: list[float], elements: Sequence[Stretch], target: int) -> list[int]:
    """Lengths rounded to samples so they sum to `target` exactly: floors, then one sample
    each to the largest remainders that have room (ties: the earlier element)."""
    lengths = [int(v // 1) for v in values]
    short = target - sum(lengths)
    order = sorted(range(len(values)), key=lambda i: (-(values[i] - lengths[i]), i))
    for i in order:
        if short <= 0:
            break
        if lengths[i] < elements[i].high:
            lengths[i] += 1
            short -= 1
    return lengths


def _nearest(choices: tuple[int, ...], share: float) -> int:
    return min(choices, key=lambda c: (abs(c - share), c))


def fit(elements: Sequence[Stretch], change: int) -> list[int]:
    """Each element's length so that together they are `change` samples longer (or shorter,
    if negative) than natural; OutOfReach if they cannot be."""
    shorter, longer = reach(elements)
    if not -shorter <= change <= longer:
        raise OutOfReach(change)
    shares = _share(elements, float(change))
    lengths = [e.natural + s for e, s in zip(elements, shares, strict=True)]
    # Whole cycles: each breathing practice takes the choice nearest its share; the
    # continuous elements then share what is left.
    cycles = [i for i, e in enumerate(elements) if e.choices]
    for i in cycles:
        lengths[i] = _nearest(elements[i].choices, lengths[i])
    free = [i for i, e in enumerate(elements) if not e.choices]
    fixed_total = sum(int(lengths[i]) for i in cycles)
    target = sum(e.natural for e in elements) + change
    rest = [elements[i] for i in free]
    rest_change = target - fixed_total - sum(e.natural for e in rest)
    shorter, longer = reach(rest)
    if not -shorter <= rest_change <= longer:
        # Rounding asked too much of the silences: move cycles one choice at a time the
        # way that relieves them (a cycle more when the silences would pass their longest,
        # one less when their shortest) until the silences can carry the rest. They move
        # in the order rounding moves them as the change grows: the highest tier first (it
        # takes any change first), then by the share per weight at which each would round
        # to that choice (exact; shares grow by weight), then by position; back towards
        # natural in the reverse order, and no further than natural. So a larger change
        # never takes a cycle back.
        way = 1 if rest_change > longer else -1
        ahead = way * change > 0
        while rest_change > longer if way > 0 else rest_change < -shorter:
            moves: list[tuple[tuple[int, Fraction, int], int, int]] = []
            for i in cycles:
                e = elements[i]
                at = e.choices.index(int(lengths[i])) + way
                back = (int(lengths[i]) - e.natural) * way < 0
                if 0 <= at < len(e.choices) and (ahead or back):
                    # Half way between the two choices, as share per weight.
                    turn = Fraction(int(lengths[i]) + e.choices[at] - 2 * e.natural, 2)
                    turn = way * turn / max(e.weight, 1)
                    key = (-e.tier, turn, i) if ahead else (e.tier, turn, -i)
                    moves.append((key, i, e.choices[at]))
            if not moves:
                break
            _, i, new = min(moves)
            rest_change += int(lengths[i]) - new
            lengths[i] = new
        if not -shorter <= rest_change <= longer:
            raise OutOfReach(change)
    rest_shares = _share(rest, float(rest_change))
    rest_lengths = _whole(
        [e.natural + s for e, s in zip(rest, rest_shares, strict=True)],
        rest,
        target - sum(int(lengths[i]) for i in cycles),
    )
    for i, length in zip(free, rest_lengths, strict=True):
        lengths[i] = length
    return [int(v) for v in lengths]
