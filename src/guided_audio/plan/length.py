"""A session at a `--length`: its timeline fitted to it, or a usage error that names the
lengths the session can be."""

from __future__ import annotations

from fractions import Fraction

from guided_audio.dsp.effects import RATE, seconds_to_samples
from guided_audio.errors import UsageError
from guided_audio.plan.builder import OutOfRange, build, reach
from guided_audio.plan.timeline import FileLength, Measure, Timeline
from guided_audio.script.grammar import MIN_LENGTH_S
from guided_audio.script.model import Script
from guided_audio.script.values import DurationForm, duration_from_text, duration_text


def parse_length(text: str) -> float:
    """`--length 12m` in seconds; a UsageError for anything that is not a length."""
    if text.strip().startswith("-"):
        raise UsageError(f"--length {text}: a length is more than zero, like 12m")
    try:
        seconds = duration_from_text(text)
    except DurationForm as exc:
        raise UsageError(f"--length {text}: {exc}") from None
    if seconds is None:
        raise UsageError(f"--length {text}: expected a duration like 12m, 1h05m or 90s")
    if seconds < MIN_LENGTH_S:
        raise UsageError(f"--length {text}: a session is at least {MIN_LENGTH_S:g}s long")
    return float(seconds)


def length_text(seconds: float) -> str:
    """How a length is written back: 12m, 1h05m, 7m30s."""
    return duration_text(Fraction(seconds).limit_denominator(1000))


def at_length(
    script: Script, measure: Measure, file_length: FileLength, length_s: float | None
) -> Timeline:
    """The timeline at `length_s` (None: natural); a UsageError (exit 2) naming the lengths
    the session can be when it cannot be that one."""
    target = None if length_s is None else seconds_to_samples(length_s)
    try:
        return build(script, measure, file_length, target)
    except OutOfRange as exc:
        asked = f"{script.path.name}: --length {length_text(length_s or 0)}"
        can_be = f"{minutes(exc.shortest, up=True)} to {minutes(exc.longest)}"
        if exc.whole_cycles:
            raise UsageError(
                f"{asked}: whole breath cycles cannot make it exactly that long; a little "
                f"longer or shorter may work (this session can be {can_be})"
            ) from None
        raise UsageError(f"{asked}: this session can be {can_be}") from None


def span(script: Script, measure: Measure, file_length: FileLength) -> str:
    """The lengths a session can be, as `list` shows them: 6:40-31:00."""
    shortest, longest = reach(script, measure, file_length)
    return f"{minutes(shortest, up=True)}-{minutes(longest)}"


def minutes(samples: int, up: bool = False) -> str:
    """M:SS (or H:MM:SS), rounded to a whole second inward of a range's end."""
    seconds = -(-samples // RATE) if up else samples // RATE
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
