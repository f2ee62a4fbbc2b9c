"""Reading one value of a script: durations, decibels, numbers in range, choices,
audio and image files. Each reader takes a YAML node and raises a located problem.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from guided_audio.errors import Invalid, Problem
from guided_audio.script.grammar import (
    AUDIO_SUFFIXES,
    DURATION_UNITS,
    MAX_PAUSE_S,
    MAX_SESSION_S,
)
from guided_audio.script.yamlnode import STR, Node, suggest

# --- collecting problems ---------------------------------------------------------------------
T = TypeVar("T")


class Problems:
    def __init__(self) -> None:
        self.items: list[Problem] = []

    @contextmanager
    def collect(self) -> Iterator[None]:
        try:
            yield
        except Invalid as exc:
            self.items.append(exc.problem)

    def get(self, fn: Callable[[], T], default: T) -> T:
        """fn(), or `default` with the problem recorded."""
        try:
            return fn()
        except Invalid as exc:
            self.items.append(exc.problem)
            return default


def read_fields(
    node: Node, allowed: tuple[str, ...], where: str, p: Problems
) -> dict[str, tuple[Node, Node]]:
    """The mapping's known keys; unknown ones are recorded and skipped."""
    out: dict[str, tuple[Node, Node]] = {}
    for name, key, value in node.items(unique=False):
        with p.collect():
            if name not in allowed:
                key.fail(f"unknown key '{name}' in {where}", suggest(name, allowed))
            if name in out:
                key.fail(f"duplicate key '{name}'", "each key may appear once in a mapping")
            out[name] = (key, value)
    return out


# --- values ----------------------------------------------------------------------------------
_NUMBER = r"\d+(?:\.\d+)?"
_UNITS = sorted((u for u, _, _ in DURATION_UNITS), key=len, reverse=True)  # ms before m
_PART = re.compile(f" *({_NUMBER}) *({'|'.join(_UNITS)})", re.IGNORECASE)
_UNIT_NAMES = {"h": "hours", "m": "minutes", "s": "seconds", "ms": "milliseconds"}
DURATION_FORMS = "a duration like 7s or 1m30s"


class DurationForm(ValueError):
    """A duration whose parts are in a form it cannot have (`1m90s`, `1.5m30s`); `seconds`
    is what it adds up to, if its parts are in order."""

    def __init__(self, reason: str, seconds: Fraction | None = None) -> None:
        super().__init__(reason)
        self.seconds = seconds


def duration_text(seconds: Fraction) -> str:
    """How a duration is best written: 7s, 1m30s, 1h05m, 2m0.5s."""
    hours, rest = divmod(seconds, 3600)
    minutes, rest = divmod(rest, 60)
    parts = [f"{int(hours)}h" if hours else "", f"{int(minutes)}m" if minutes else ""]
    if rest or not (hours or minutes):
        parts.append(f"{float(rest):g}s")
    return "".join(parts)


def duration_from_text(text: str) -> Fraction | None:
    """Seconds, exactly, for '7', '1.5s', '500ms', '1m30s', '1h'; None if it is not a
    duration. Raises DurationForm for parts out of order or too large for their place."""
    text = text.strip()
    if re.fullmatch(_NUMBER, text):
        return Fraction(text)
    parts: list[tuple[str, str]] = []
    at = 0
    while at < len(text):
        match = _PART.match(text, at)
        if match is None:
            return None
        parts.append((match.group(1), match.group(2).lower()))
        at = match.end()
    if not parts:
        return None
    order = [u for u, _, _ in DURATION_UNITS]
    places = [order.index(unit) for _, unit in parts]
    if places != sorted(set(places)):
        raise DurationForm("its parts go once each, largest first")
    total = sum((Fraction(n) * DURATION_UNITS[order.index(u)][1] for n, u in parts), Fraction(0))
    for index, (number, unit) in enumerate(parts):
        limit = DURATION_UNITS[order.index(unit)][2]
        if index < len(parts) - 1 and "." in number:
            raise DurationForm("only its last part may have a fraction", total)
        if index > 0 and Fraction(number) >= limit:
            name = _UNIT_NAMES[unit]
            raise DurationForm(f"{name} after a larger unit must be fewer than {limit}", total)
    return total


def read_duration(
    node: Node,
    what: str,
    maximum: float = MAX_PAUSE_S,
    zero_ok: bool = False,
    minimum: float = 0.0,
) -> float:
    """A duration from `minimum` (a zero too if `zero_ok`) to `maximum` seconds."""
    seconds: Fraction | None = None
    number = node.numeric()
    if number == math.inf:
        node.fail(f"{what} is far too long; the most allowed is {duration_clock(maximum)}")
    if number is not None:
        seconds = Fraction(number) if math.isfinite(number) else None
    elif node.is_scalar and node.tag == STR:
        raw = str(node.raw.value)
        try:
            seconds = duration_from_text(raw)
        except DurationForm as exc:
            hint = f"write {duration_text(exc.seconds)}" if exc.seconds is not None else None
            node.fail(f"{node.describe()} is not a duration as written: {exc}", hint)
        if seconds is None and raw.strip().startswith("-"):
            node.fail(f"{what} must be greater than 0, found {node.describe()}", DURATION_FORMS)
    if seconds is None:
        node.fail(f"expected {DURATION_FORMS}, found {node.describe()}", "7, 7s, 500ms, 2m, 1h")
    if seconds <= 0 and not (zero_ok and seconds == 0):
        node.fail(f"{what} must be greater than 0, found {node.describe()}")
    if seconds > Fraction(maximum):
        node.fail(
            f"{what} is {duration_clock(float(min(seconds, Fraction(10**300))))}; "
            f"the most allowed is {duration_clock(maximum)}"
        )
    if 0 < seconds < Fraction(minimum):
        node.fail(f"{what} must be at least {minimum:g}s, found {node.describe()}")
    return float(seconds)


def duration_clock(seconds: float) -> str:
    if not seconds < MAX_SESSION_S * 1000:  # also inf and nan: far beyond any limit
        return "far too long"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


_DB = re.compile(r"^([+-]?\d+(?:\.\d+)?) *db$", re.IGNORECASE)


def decibels(node: Node, what: str, low: float, high: float) -> float:
    value: Fraction | None = None
    number = node.numeric()
    if number is not None:
        value = Fraction(number) if math.isfinite(number) else None
    elif node.is_scalar and node.tag == STR:
        raw = str(node.raw.value).strip()
        match = _DB.match(raw)
        if match:
            value = Fraction(match.group(1))
        elif re.fullmatch(r"[+-]?\d+(?:\.\d+)?", raw):
            value = Fraction(raw)
    if value is None:
        node.fail(f"expected {what} in dB like -20dB, found {node.describe()}")
    if not Fraction(low) <= value <= Fraction(high):
        node.fail(f"{what} must be between {low:g}dB and {high:g}dB, found {float(value):g}dB")
    return float(value)


def whole_number(node: Node, what: str, low: int, high: int) -> int:
    value = node.number(f"{what} (a whole number)")
    if value != int(value):
        node.fail(f"expected {what} as a whole number, found {node.describe()}")
    if not low <= value <= high:
        node.fail(f"{what} must be from {low} to {high}, found {int(value)}")
    return int(value)


def read_choice(node: Node, what: str, choices: tuple[str, ...]) -> str:
    value = node.text(what)
    if value not in choices:
        node.fail(f"unknown {what} '{value}'", suggest(value, choices))
    return value


_MAGIC: tuple[tuple[int, bytes], ...] = (
    (0, b"RIFF"),
    (0, b"ID3"),
    (0, b"OggS"),
    (0, b"fLaC"),
)


def _looks_like_audio(path: Path) -> bool:
    with path.open("rb") as handle:
        head = handle.read(12)
    if any(head[offset : offset + len(magic)] == magic for offset, magic in _MAGIC):
        return head[:4] != b"RIFF" or head[8:12] == b"WAVE"
    return len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0  # MPEG frame sync


@contextmanager
def file_errors(node: Node, what: str, raw: str) -> Iterator[None]:
    """A path the system cannot even look at (too long, unreadable) is a located error."""
    try:
        yield
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        shown = raw if len(raw) <= 60 else raw[:59] + "…"
        node.fail(f"cannot read the {what} file '{shown}': {reason}")


def read_audio_file(node: Node, base: Path, what: str) -> Path:
    raw = node.text(f"{what} path")
    with file_errors(node, what, raw):
        path = (base / raw).resolve()
        if not path.exists():
            node.fail(f"{what} file '{raw}' does not exist", f"paths are relative to {base}")
        if not path.is_file():
            node.fail(f"{what} '{raw}' is not a file")
        if path.suffix.lower() not in AUDIO_SUFFIXES or not _looks_like_audio(path):
            node.fail(f"{what} file '{raw}' is not audio", "use an mp3, wav, ogg or flac file")
    return path


def read_model_file(node: Node, base: Path, raw: str) -> Path:
    model = (base / raw).resolve()
    if not model.is_file():
        node.fail(f"voice model '{raw}' does not exist", f"paths are relative to {base}")
    if model.suffix != ".onnx":
        node.fail(f"voice model '{raw}' is not a Piper .onnx file")
    if not Path(f"{model}.json").is_file():
        node.fail(f"voice model '{raw}' has no '{model.name}.json' beside it")
    return model


def required_list(
    owner: Node,
    fields: dict[str, tuple[Node, Node]],
    key: str,
    missing: tuple[str, str],
    empty: str,
    p: Problems,
) -> list[Node]:
    """The elements of a required, non-empty list; problems are recorded, not raised."""
    if key not in fields:
        p.items.append(missing_key(owner, *missing))
        return []
    value = fields[key][1]
    elements: list[Node] = p.get(value.elements, [])
    if not elements and value.is_sequence:
        p.items.append(missing_key(value, empty))
    return elements


def missing_key(node: Node, message: str, hint: str | None = None) -> Problem:
    return Problem(node.location, node.path, message, hint)


COVER_MAX_BYTES = 5 * 1024 * 1024
_IMAGE_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
}


def read_cover(node: Node, base: Path) -> Path:
    raw = node.text("cover path")
    with file_errors(node, "cover", raw):
        return _checked_cover(node, base, raw)


def _checked_cover(node: Node, base: Path, raw: str) -> Path:
    path = (base / raw).resolve()
    if not path.is_file():
        node.fail(f"cover file '{raw}' does not exist", f"paths are relative to {base}")
    magic = _IMAGE_MAGIC.get(path.suffix.lower())
    with path.open("rb") as handle:
        head = handle.read(8)
    if magic is None or not any(head.startswith(m) for m in magic):
        node.fail(f"cover file '{raw}' is not a PNG or JPEG image")
    size = path.stat().st_size
    if size > COVER_MAX_BYTES:
        node.fail(
            f"cover file '{raw}' is {size / 1024 / 1024:.1f} MB; the limit is 5 MB",
            "players choke on large covers: 1400x1400 JPEG is plenty",
        )
    return path
