"""Where each spoken word starts in a Piper reading, from the samples Piper aligned to each
of its phonemes.

espeak, which turns text into phonemes for Piper, runs some short words together: its
dictionary reads "on the" as one word (ɔnðə), and "out of", "for the", "has been", "no
one"... alike. The phonemes then hold one word where the text has two, and the second
word's start is not at a space. Where the counts differ, each spoken word is read alone to
learn its own phonemes, the phoneme words are matched to the text's words in order, and a
word run together with others is cut where its phonemes best match theirs: each word then
starts at the phoneme that begins it, at the sample Piper aligned that phoneme to.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

# A phoneme word: each of its phonemes, with the sample (in the take) where it starts.
PhonemeWord = list[tuple[str, int]]

NOT_A_WORD = frozenset('^$_ .,;:!?¡¿\u2014\u2013…"“”«»()')
STRESS = frozenset("ˈˌ")  # where espeak puts stress differs between a word alone and in a line
RUN_TOGETHER_MAX = 4  # espeak's multi-word entries hold up to four words
SPLIT_MAX = 3  # one written word read as up to this many phoneme words


def phoneme_words(alignments: Iterable[tuple[str, int]], offset: int) -> list[PhonemeWord]:
    """The words of a sentence's alignment (phoneme, samples), as espeak spaced them: a
    word starts at the first phoneme after a space (or the sentence's start)."""
    words: list[PhonemeWord] = []
    position, in_word = offset, False
    for phoneme, samples in alignments:
        if phoneme in (" ", "^", "$"):
            in_word = False
        elif phoneme not in NOT_A_WORD:
            if not in_word:
                words.append([])
                in_word = True
            words[-1].append((phoneme, position))
        position += int(samples)
    return words


def word_starts(
    found: Sequence[PhonemeWord], said: Sequence[str], phonemize: Callable[[str], list[str]]
) -> tuple[int, ...] | None:
    """Where each of the words `said` starts, from the phoneme words `found` in a reading of
    them; `phonemize` gives a word's phonemes read alone. None when they cannot be matched."""
    if len(found) == len(said):
        return tuple(word[0][1] for word in found)
    alone = [[p for p in phonemize(word) if _compared(p)] for word in said]
    # Least total distance, matching words in order: one phoneme word for up to
    # RUN_TOGETHER_MAX written words, or one written word for up to SPLIT_MAX phoneme words.
    # A line runs words together or splits them, seldom both: the search keeps near that.
    low, high = min(0, len(said) - len(found)) - 1, max(0, len(said) - len(found)) + 1
    best: dict[tuple[int, int], tuple[int, tuple[int, ...]]] = {(0, 0): (0, ())}
    for i, j in itertools.product(range(len(said)), range(len(found))):
        if (i, j) not in best:
            continue
        cost, starts = best[i, j]
        moves: list[tuple[int, int, int, tuple[int, ...]]] = []
        for k in range(1, min(RUN_TOGETHER_MAX, len(said) - i) + 1):
            cut = _cut(found[j], alone[i : i + k])
            if cut is not None:
                moves.append((i + k, j + 1, cut[0], tuple(found[j][c][1] for c in cut[1])))
        for s in range(2, min(SPLIT_MAX, len(found) - j) + 1):
            heard = [p for word in found[j : j + s] for p, _ in word if _compared(p)]
            moves.append((i + 1, j + s, _distance(heard, alone[i]), (found[j][0][1],)))
        for to in [(a, b, c, d) for a, b, c, d in moves if low <= a - b <= high]:
            if to[:2] not in best or cost + to[2] < best[to[:2]][0]:
                best[to[:2]] = (cost + to[2], starts + to[3])
    end = best.get((len(said), len(found)))
    return None if end is None else end[1]


def _compared(phoneme: str) -> bool:
    return phoneme not in STRESS and phoneme not in NOT_A_WORD


def _cut(word: PhonemeWord, alone: list[list[str]]) -> tuple[int, tuple[int, ...]] | None:
    """The cut of one phoneme word into len(alone) words that best matches each word's own
    phonemes: its distance and where each word starts (indexes into `word`, a stress mark
    before a word's first sound belonging to it); None if it has too few phonemes."""
    kept = [n for n, (phoneme, _) in enumerate(word) if _compared(phoneme)]
    heard = [word[n][0] for n in kept]
    best: tuple[int, tuple[int, ...]] | None = None
    for inner in itertools.combinations(range(1, len(heard)), len(alone) - 1):
        bounds = [0, *inner, len(heard)]
        cost = sum(
            _distance(heard[a:b], own) for a, b, own in zip(bounds, bounds[1:], alone, strict=False)
        )
        if best is None or cost < best[0]:
            best = (cost, (0, *(kept[c - 1] + 1 for c in inner)))
    return best


def _distance(a: Sequence[str], b: Sequence[str]) -> int:
    """Levenshtein distance between two phoneme sequences."""
    row = list(range(len(b) + 1))
    for n, x in enumerate(a, start=1):
        previous, row[0] = row[0], n
        for m, y in enumerate(b, start=1):
            previous, row[m] = row[m], min(row[m] + 1, row[m - 1] + 1, previous + (x != y))
    return row[-1]
