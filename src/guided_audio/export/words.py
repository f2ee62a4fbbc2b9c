"""One start per written word, from the starts the engine aligned.

espeak, which reads words into phonemes for Piper, runs some pairs of short words together
("on the", "of a"): the alignment then has one word where the text has two, and the
second would get no time of its own. The pair's span is real; where the second word begins
inside it is shared out by letters, at the join whose spans best fit the session's pace.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence

MAX_JOINED = 3  # more words missing than this: the alignment is not trusted at all
SHORT = 4  # letters: espeak only runs a word together with a short one


def _letters(word: str) -> int:
    return max(1, len(re.sub(r"[\W_]", "", word)))


def one_per_word(
    starts: Sequence[int] | None, words: Sequence[str], length: int
) -> tuple[int, ...] | None:
    """A start for each of `words` (None when the engine told none, or too few to place)."""
    if starts is None:
        return None
    missing = len(words) - len(starts)
    if missing == 0:
        return tuple(starts)
    if missing < 0 or missing > MAX_JOINED:
        return None
    ends = [*starts[1:], length]
    candidates = [
        m for m in range(1, len(words))
        if min(_letters(words[m - 1]), _letters(words[m])) <= SHORT
    ]  # fmt: skip
    best: tuple[float, tuple[int, ...]] | None = None
    for joined in itertools.combinations(candidates, missing):
        groups = _groups(len(words), set(joined))
        if len(groups) != len(starts):
            continue
        paces = [
            math.log(max(1, end - start) / sum(_letters(words[w]) for w in group))
            for group, start, end in zip(groups, starts, ends, strict=True)
        ]
        mean = sum(paces) / len(paces)
        cost = sum((p - mean) ** 2 for p in paces)
        if best is None or cost < best[0]:
            best = (cost, _split(groups, starts, ends, words))
    return None if best is None else best[1]


def _groups(count: int, joined: set[int]) -> list[list[int]]:
    groups: list[list[int]] = []
    for word in range(count):
        if word in joined and groups:
            groups[-1].append(word)
        else:
            groups.append([word])
    return groups


def _split(
    groups: list[list[int]], starts: Sequence[int], ends: Sequence[int], words: Sequence[str]
) -> tuple[int, ...]:
    out: list[int] = []
    for group, start, end in zip(groups, starts, ends, strict=True):
        letters = [_letters(words[w]) for w in group]
        total, before = sum(letters), 0
        for count in letters:
            out.append(start + (end - start) * before // total)
            before += count
    return tuple(out)
