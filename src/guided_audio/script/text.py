"""Between script and plan: what a `say` text becomes when spoken.

A text is cut into fragments at sentence and clause ends, so the pauses between them are
exact silences the plan places (not whatever an engine improvises), and every fragment keeps
its written words, which the transcript shows and times. Each word is normalised the way a
guide would say it ("5-4-3-2-1", "10 min", "1:30", "Dr.", "3rd") before any engine reads it,
and an author's `pronounce:` map overrides any word.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from dataclasses import dataclass

MIN_CLAUSE_WORDS = 2  # a shorter clause is not cut off from what follows
SENTENCE = "sentence"
CLAUSE = "clause"
END = "end"  # the end of the text (or of the part before an inline pause)

# A period after these does not end a sentence ("Dr. Reyes", "e.g. a chair").
_ABBREVIATIONS = "dr mr mrs ms mx st prof jr sr vs approx e.g i.e cf"
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
    """The token's punctuation as an engine should read it: an ellipsis becomes a comma or
    a full stop (the plan's pause does the trailing off)."""
    bare = _bare(token)
    if bare.endswith(("...", "…")):
        core = bare.rstrip(".…")
        return f"{core}{'.' if boundary == SENTENCE else ','}" if core else ""
    return token


# --- saying words as a guide would ----------------------------------------------------------
ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINAL_ENDINGS = {
    "one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
    "nine": "ninth", "twelve": "twelfth",
}  # fmt: skip
SPOKEN_ABBREVIATIONS = {
    "dr.": "Doctor", "mr.": "Mister", "mrs.": "Missus", "prof.": "Professor",
    "st.": "Saint", "vs.": "versus", "e.g.": "for example", "i.e.": "that is",
    "approx.": "approximately", "etc.": "et cetera", "cf.": "compare", "&": "and",
}  # fmt: skip
UNITS = {
    "s": "second", "sec": "second", "secs": "second", "second": "second", "seconds": "second",
    "m": "minute", "min": "minute", "mins": "minute", "minute": "minute", "minutes": "minute",
    "h": "hour", "hr": "hour", "hrs": "hour", "hour": "hour", "hours": "hour",
    "x": "time", "times": "time",
}  # fmt: skip
_SHORT_UNITS = {"s", "sec", "secs", "m", "min", "mins", "h", "hr", "hrs", "x"}
_EDGE = re.compile(r"^([^\w\[]*)(.*?)([^\w\]%]*)$", re.DOTALL)


def number_words(n: int) -> str:
    """0 .. 999 999 999 in words: 'one hundred twenty-five'."""
    if n < 20:
        return ONES[n]
    if n < 100:
        tens, ones = divmod(n, 10)
        return TENS[tens] + (f"-{ONES[ones]}" if ones else "")
    for size, name in ((10**6, "million"), (1000, "thousand"), (100, "hundred")):
        if n >= size:
            high, rest = divmod(n, size)
            return f"{number_words(high)} {name}" + (f" {number_words(rest)}" if rest else "")
    raise AssertionError(n)


def ordinal_words(n: int) -> str:
    words = number_words(n)
    head, sep, last = words.rpartition("-") if "-" in words.split()[-1] else words.rpartition(" ")
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return f"{head}{sep}{last}"


def _number(text: str) -> str | None:
    """A plain number (integer, decimal or percentage) in words, or None."""
    match = re.fullmatch(
        r"(\d{1,9})(?:\.(\d+))?(%?)",
        text.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+(\.\d+)?%?", text) else text,
    )
    if not match:
        return None
    words = number_words(int(match[1]))
    if match[2]:
        words += " point " + " ".join(ONES[int(d)] for d in match[2])
    return words + (" percent" if match[3] else "")


def _duration(amount: str, unit: str) -> str | None:
    """'10', 'min' -> 'ten minutes'."""
    spoken = _number(amount)
    name = UNITS.get(unit.casefold())
    if spoken is None or name is None:
        return None
    return f"{spoken} {name}{'' if spoken == 'one' else 's'}"


def say_word(core: str, following: str | None = None) -> tuple[str, bool]:
    """How a guide says one word (without its surrounding punctuation); whether it also
    used the following word (a unit: '10 min')."""
    if (number := _number(core)) is not None:
        if following is not None and _bare(following).rstrip(".,;:!?").casefold() in UNITS:
            unit = _bare(following).rstrip(".,;:!?")
            spoken = _duration(core, unit)
            if spoken is not None:
                return spoken, True
        return number, False
    if match := re.fullmatch(r"(\d+(?:\.\d+)?)([a-zA-Z]+)", core):
        if match[2].casefold() in _SHORT_UNITS | {"secs", "mins", "hrs"}:
            spoken = _duration(match[1], match[2])
            if spoken is not None:
                return spoken, False
        if re.fullmatch(r"(?i)st|nd|rd|th", match[2]):
            return ordinal_words(int(match[1])), False
    if match := re.fullmatch(r"(\d{1,2}):([0-5]\d)", core):
        minutes, seconds = int(match[1]), int(match[2])
        spoken = _duration(str(minutes), "minute") or ""
        return (f"{spoken} {_duration(str(seconds), 'second')}" if seconds else spoken), False
    if re.fullmatch(r"\d+(?:-\d+)+", core):
        numbers = [int(n) for n in core.split("-")]
        if len(numbers) == 2:
            return f"{number_words(numbers[0])} to {number_words(numbers[1])}", False
        steps = {b - a for a, b in itertools.pairwise(numbers)}
        if steps in ({1}, {-1}):  # a count: said with a breath between numbers
            return ", ".join(number_words(n) for n in numbers), False
        return " ".join(number_words(n) for n in numbers), False  # a name, like 4-7-8
    return core, False


def speak(token: str, following: str | None, pronounce: Mapping[str, str]) -> tuple[str, bool]:
    """The token as spoken (its punctuation kept), and whether the following token was used."""
    if token.casefold() in SPOKEN_ABBREVIATIONS:
        return SPOKEN_ABBREVIATIONS[token.casefold()], False
    match = _EDGE.match(token)
    assert match is not None
    lead, core, trail = match.groups()
    if core.casefold() in pronounce:
        return f"{lead}{pronounce[core.casefold()]}{trail}", False
    if f"{core}{trail[:1]}".casefold() in SPOKEN_ABBREVIATIONS:  # "e.g.," keeps its comma
        return f"{lead}{SPOKEN_ABBREVIATIONS[f'{core}{trail[:1]}'.casefold()]}{trail[1:]}", False
    spoken, used = say_word(core, following)
    if used and following is not None:
        unit_match = _EDGE.match(_bare(following))
        trail = unit_match.group(3) if unit_match else ""
    return f"{lead}{spoken}{trail}", used


def said_words(spoken: str) -> list[str]:
    """The words an engine will say, in order; a [[ phoneme ]] group's words stay groups
    of their own ("[[ɔn ðə]]" says "[[ɔn]]" and "[[ðə]]")."""
    words: list[str] = []
    for piece in re.split(r"(\[\[.*?\]\])", spoken):
        if piece.startswith("[["):
            words += (f"[[{word}]]" for word in piece[2:-2].split())
        else:
            words += re.findall(rf"\w+(?:['{RIGHT_QUOTE}-]\w+)*", piece)
    return words


def spoken_words(spoken: str) -> int:
    """How many words an engine will say: [[ phoneme ]] groups count by their spaces."""
    return len(said_words(spoken))


def fragments(text: str, pronounce: Mapping[str, str] | None = None) -> list[Fragment]:
    """Cut `text` at sentence and clause ends (dashes between words are clause ends too),
    each word said as a guide would."""
    pronounce = pronounce or {}
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

    index = 0
    while index < len(tokens):
        token = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else None
        if token in _DASHES:
            if words:
                words.append(Word(token, 0))
                spoken[-1] = spoken[-1].rstrip(",;:") + ","
                close(CLAUSE)
            index += 1
            continue
        said, used = speak(token, following, pronounce)
        group = [token, following] if used and following is not None else [token]
        index += len(group)
        after = tokens[index] if index < len(tokens) else None
        boundary = _boundary(group[-1], after)
        form = _spoken_form(said, boundary)
        words.append(Word(token, spoken_words(form)))
        words.extend(Word(unit, 0) for unit in group[1:])  # said with its number
        if form:
            spoken.append(form)
        # A clause of one word ("Hello, friend.") stays with what follows: the engine's own
        # comma is pause enough there.
        short = boundary == CLAUSE and sum(w.spoken for w in words) < MIN_CLAUSE_WORDS
        if boundary is not None and after is not None and not short:
            close(boundary)
    close(END)
    return out
