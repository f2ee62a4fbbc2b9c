"""Regular expressions that match a duration or a decibel value as people write it
(`1m30s`, `-20dB`) only when it lies within a range: the JSON Schema's `pattern`s, made
from the grammar's bounds so an editor checks the ranges `validate` checks.

A regular expression cannot add, but it can compare digit by digit. A number is compared
with a bound through the bound's decimal expansion (a rational one, perhaps repeating, as
10 s is 0.1666... minutes); a duration of several parts is decided by its first part
unless that part sits on the bound, when the rest is compared with what is left. That
works because a duration's later parts are whole multiples below the first part's unit
(`grammar.DURATION_UNITS`), which the validator requires too.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from math import floor

from guided_audio.script.grammar import DURATION_UNITS

Bound = tuple[Fraction, bool]  # a value, and whether the value itself is allowed


def _either(parts: list[str | None]) -> str | None:
    kept = [p for p in parts if p is not None]
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else "(?:" + "|".join(kept) + ")"


def _digits(low: int, high: int) -> str | None:
    if low > high:
        return None
    if low == high:
        return str(low)
    return r"\d" if (low, high) == (0, 9) else f"[{low}-{high}]"


def _expansion(x: Fraction) -> tuple[str, str]:
    """The digits of x in [0, 1) after the point: a prefix and a repeating cycle ("0" when
    the expansion ends)."""
    seen: dict[Fraction, int] = {}
    digits: list[str] = []
    while x not in seen:
        seen[x] = len(digits)
        x *= 10
        digit = floor(x)
        digits.append(str(digit))
        x -= digit
    start = seen[x]
    return "".join(digits[:start]), "".join(digits[start:])


# --- fractions: the digits after a number's point ---------------------------------------------
def _fraction(x: Fraction, below: bool, inclusive: bool) -> str | None:
    """Digit strings F (perhaps empty) with 0.F below x (or above, if not `below`); None if
    there are none. x is in [0, 1)."""
    prefix, cycle = _expansion(x)
    if cycle == "0":  # what is left of x is 0
        if below:
            tail: str | None = "0*" if inclusive else None
        else:
            tail = r"\d*" if inclusive else r"0*[1-9]\d*"
    else:
        exits: list[str | None] = []
        for j, c in enumerate(cycle):
            step = _digits(0, int(c) - 1) if below else _digits(int(c) + 1, 9)
            exits.append(None if step is None else cycle[:j] + step + r"\d*")
            if below:
                exits.append(cycle[:j] or "")  # stopping short of x is below it
        tail = _either(exits)
        tail = None if tail is None else f"(?:{cycle})*{tail}"
    for d in reversed(prefix):
        step = _digits(0, int(d) - 1) if below else _digits(int(d) + 1, 9)
        options = [None if step is None else step + r"\d*"]
        options.append(None if tail is None else d + tail)
        tail = _either(options)
        if below and tail is not None:
            tail = f"(?:{tail})?"  # stopping here is below x, whatever x has left
    return tail


def _empty_fraction_ok(x: Fraction, below: bool, inclusive: bool) -> bool:
    """Whether a number with no fraction at all (0.F = 0) is on the allowed side of x."""
    return (x > 0 or inclusive) if below else (x == 0 and inclusive)


# --- whole numbers ----------------------------------------------------------------------------
def _at_most_int(n: int) -> str:
    """Whole numbers from 0 to n, leading zeros allowed."""
    text = str(n)
    shorter = rf"\d{{1,{len(text) - 1}}}" if len(text) > 1 else None

    def same_length(digits: str) -> str:
        d, rest = int(digits[0]), digits[1:]
        if not rest:
            return _digits(0, d) or ""
        return _either([
            None if d == 0 else f"{_digits(0, d - 1)}\\d{{{len(rest)}}}",
            str(d) + same_length(rest),
        ]) or ""  # fmt: skip

    return "0*" + (_either([shorter, same_length(text)]) or "")


def _at_least_int(n: int) -> str:
    """Whole numbers from n up, leading zeros allowed."""
    text = str(n)

    def same_length(digits: str) -> str:
        d, rest = int(digits[0]), digits[1:]
        if not rest:
            return _digits(d, 9) or ""
        return _either([
            None if d == 9 else f"{_digits(d + 1, 9)}\\d{{{len(rest)}}}",
            str(d) + same_length(rest),
        ]) or ""  # fmt: skip

    return "0*" + (_either([f"[1-9]\\d{{{len(text)},}}", same_length(text)]) or "")


def whole_numbers(low: int, high: int) -> str | None:
    """Whole numbers from low to high (both included), leading zeros allowed."""
    if low > high:
        return None
    if low == 0:
        return _at_most_int(high)
    return rf"(?={_at_least_int(low)}(?!\d)){_at_most_int(high)}"


# --- numbers with a fraction ------------------------------------------------------------------
def _number_beyond(bound: Bound, below: bool) -> str | None:
    """Unsigned decimal numbers at most (`below`) or at least the bound."""
    x, inclusive = bound
    whole, rest = floor(x), x - floor(x)
    if below:
        other = _at_most_int(whole - 1) + r"(?:\.\d+)?" if whole > 0 else None
    else:
        other = _at_least_int(whole + 1) + r"(?:\.\d+)?"
    fraction = _fraction(rest, below, inclusive)
    at_whole = None
    if fraction is not None:
        optional = "?" if _empty_fraction_ok(rest, below, inclusive) else ""
        at_whole = f"0*{whole}(?:\\.(?=\\d){fraction}){optional}"
    return _either([other, at_whole])


def numbers(low: Bound, high: Bound) -> str | None:
    """Unsigned decimal numbers (7, 07, 7.25) from low to high; None if there are none."""
    if low[0] > high[0] or (low[0] == high[0] and not (low[1] and high[1])):
        return None
    at_most = _number_beyond(high, below=True)
    if at_most is None:
        return None
    if low == (Fraction(0), True):
        return at_most
    at_least = _number_beyond(low, below=False)
    if at_least is None:
        return None
    return f"(?={at_least}(?![\\d.])){at_most}"


def signed_numbers(low: Fraction, high: Fraction) -> str | None:
    """Decimal numbers with an optional sign (-20, +6, 0.5) from low to high, inclusive."""
    negative = None
    if low <= 0:
        magnitudes = numbers((max(Fraction(0), -high), True), (-low, True))
        negative = None if magnitudes is None else "-" + magnitudes
    positive = None
    if high >= 0:
        magnitudes = numbers((max(Fraction(0), low), True), (high, True))
        positive = None if magnitudes is None else r"\+?" + magnitudes
    return _either([negative, positive])


# --- durations --------------------------------------------------------------------------------
_SPACE = " *"


def _unit(name: str) -> str:
    return "".join(f"[{c}{c.upper()}]" for c in name)


def _min(a: Bound, b: Bound) -> Bound:
    if a[0] != b[0]:
        return a if a[0] < b[0] else b
    return (a[0], a[1] and b[1])


def _max(a: Bound, b: Bound) -> Bound:
    if a[0] != b[0]:
        return a if a[0] > b[0] else b
    return (a[0], a[1] and b[1])


@cache
def _parts(start: int, low: Bound, high: Bound, first: bool) -> str | None:
    """Durations of one or more parts, each of a unit from DURATION_UNITS[start:] in order,
    whose total is from low to high. A part after the first is below its own limit."""
    options: list[str | None] = []
    for index in range(start, len(DURATION_UNITS)):
        name, seconds, limit = DURATION_UNITS[index]
        unit = Fraction(seconds)
        top = high if first else _min(high, (limit * unit, False))
        # The last part: a number, perhaps with a fraction.
        last = numbers((low[0] / unit, low[1]), (top[0] / unit, top[1]))
        if last is not None:
            options.append(last + _SPACE + _unit(name))
        if index + 1 == len(DURATION_UNITS):
            continue
        # A whole number of this unit, then smaller parts worth less than one of it.
        largest = floor(high[0] / unit) if first else min(floor(high[0] / unit), limit - 1)
        free_low = floor(low[0] / unit) + (1 if low[0] % unit or not low[1] else 0)
        free_high = floor(high[0] / unit) - 1
        free = whole_numbers(max(free_low, 0), min(free_high, largest))
        rest = _parts(index + 1, (Fraction(0), True), (unit, False), False)
        if free is not None and rest is not None:
            options.append(free + _SPACE + _unit(name) + _SPACE + rest)
        edges = {floor(low[0] / unit), floor(high[0] / unit)}
        for n in sorted(edges):
            if (free_low <= n <= free_high) or not 0 <= n <= largest:
                continue
            left = _max((low[0] - n * unit, low[1]), (Fraction(0), True))
            right = _min((high[0] - n * unit, high[1]), (unit, False))
            rest = _parts(index + 1, left, right, False)
            if rest is not None:
                options.append(f"0*{n}" + _SPACE + _unit(name) + _SPACE + rest)
    return _either(options)


def durations(low: Bound, high: Bound) -> str | None:
    """Durations as written (7, 7s, 1.5m, 1m30s, 1h, 500ms) from low to high seconds."""
    return _either([numbers(low, high), _parts(0, low, high, True)])


def duration_pattern(ranges: list[tuple[Bound, Bound]]) -> str:
    """A whole-string pattern for durations within any of the ranges."""
    return r"^\s*" + (_either([durations(lo, hi) for lo, hi in ranges]) or "(?!)") + r"\s*$"


def decibels_pattern(low: float, high: float) -> str:
    """A whole-string pattern for decibels (-20dB, -20 db, +6dB, or a bare -20) in range."""
    number = signed_numbers(Fraction(low), Fraction(high)) or "(?!)"
    return rf"^\s*{number}(?: *[dD][bB])?\s*$"
