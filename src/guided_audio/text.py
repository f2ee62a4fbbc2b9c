"""Between script and plan: what a `say` text becomes when spoken.

A text is cut into fragments at sentence and clause ends, so the pauses between them are
exact silences the plan places (not whatever an engine improvises), and every fragment keeps
its written words, which the transcript shows and times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

SENTENCE = "sentence"
CLAUSE = "clause"
END = "end"  # the end of the text (or of the part before an inline pause)

# A period after these does not end a sentence ("Dr. Reyes", "e.g. a chair").
_ABBREVIATIONS = "dr mr mrs ms mx st prof jr sr vs etc approx e.g i.e cf no min max hr hrs sec secs"
ABBREVIATIONS = frozenset(_ABBREVIATIONS.split())
EN_DASH, EM_DASH, RIGHT_QUOTE = "\u2013", "\u2014", "\u2019"
_CLOSERS = f"\"'\u201d{RIGHT_QUOTE})]"
_DASHES = (EM_DASH, EN_DASH, "-", "--")


@dataclass(frozen=True)
class Word:
    """A word as written, and how many words it becomes when spoken ("5-4-3" is three)."""

    written: str
    spoken: int


@dataclass(frozen=True)
class Fragment:
    """One phrase for an engine: a sentence, or a clause of one."""

    spoken: str
    words: tuple[Word, ...]
    ends: str  # sentence | clause | end

    @property
    def written(self) -> str:
        return " ".join(w.written for w in self.words)


def _bare(token: str) -> str:
    return token.rstrip(_CLOSERS)


def _boundary(token: str, following: str | None) -> str | None:
    """What a token ends: a sentence, a clause, or nothing."""
    bare = _bare(token)
    if bare.endswith(("...", "…")):
        # An ellipsis trails off: a clause pause, or a sentence end before a capital.
        if following is None or following[:1].isupper():
            return SENTENCE
        return CLAUSE
    if bare.endswith((".", "!", "?")):
        stem = bare.rstrip(".!?").casefold()
        if bare.endswith(".") and (stem in ABBREVIATIONS or re.fullmatch(r"[a-z]", stem)):
            return None
        return SENTENCE
    if bare.endswith((",", ";", ":")):
        return CLAUSE
    return None


def _spoken_form(token: str, boundary: str | None) -> str:
    """The token as an engine should read it; an ellipsis becomes ordinary punctuation."""
    bare = _bare(token)
    if bare.endswith(("...", "…")):
        core = bare.rstrip(".…")
        return f"{core}{'.' if boundary == SENTENCE else ','}" if core else ""
    return token


def fragments(text: str) -> list[Fragment]:
    """Cut `text` at sentence and clause ends (dashes between words are clause ends too)."""
    spaced = re.sub(rf"(\w)({EM_DASH}|{EN_DASH}|--)(\w)", r"\1 \2 \3", text)
    tokens = spaced.split()
    out: list[Fragment] = []
    words: list[Word] = []
    spoken: list[str] = []

    def close(ends: str) -> None:
        if words and any(w.spoken for w in words):
            out.append(Fragment(" ".join(spoken), tuple(words), ends))
        elif words and out:  # only punctuation: it belongs to the previous fragment
            last = out[-1]
            out[-1] = Fragment(last.spoken, (*last.words, *words), last.ends)
        words.clear()
        spoken.clear()

    for index, token in enumerate(tokens):
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token in _DASHES:
            if words:
                words.append(Word(token, 0))
                spoken[-1] = spoken[-1].rstrip(",;:") + ","
                close(CLAUSE)
            continue
        boundary = _boundary(token, following)
        form = _spoken_form(token, boundary)
        words.append(Word(token, len(re.findall(rf"\w+(?:['{RIGHT_QUOTE}-]\w+)*", form))))
        if form:
            spoken.append(form)
        if boundary is not None and following is not None:
            close(boundary)
    close(END)
    return out
