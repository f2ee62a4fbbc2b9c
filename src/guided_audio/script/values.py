"""Reading one value of a script: durations, decibels, numbers in range, choices,
audio and image files. Each reader takes a YAML node and raises a located problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

from guided_audio.errors import Invalid, Problem
from guided_audio.script.grammar import (
    AUDIO_SUFFIXES,
    MAX_PAUSE_S,
    MAX_SESSION_S,
)
from guided_audio.script.yamlnode import BOOL, NULL, Node, suggest

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
_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?$"
)
DURATION_FORMS = "a duration like 7s or 1m30s"


def duration_from_text(text: str) -> float | None:
    """Seconds for '7', '1.5s', '500ms', '1m30s', '1h'; None if it is not a duration."""
    text = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        return float(text)
    match = _DURATION.match(text)
    if not text or not match or not any(match.groupdict().values()):
        return None
    parts = match.groupdict()
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(v) * scale[k] for k, v in parts.items() if v)


def read_duration(
    node: Node, what: str, maximum: float = MAX_PAUSE_S, zero_ok: bool = False
) -> float:
    seconds: float | None = None
    if node.is_scalar and node.tag not in (BOOL, NULL):
        seconds = duration_from_text(str(node.raw.value))
        if seconds is None and str(node.raw.value).strip().startswith("-"):
            node.fail(f"{what} must be greater than 0, found {node.describe()}", DURATION_FORMS)
    if seconds is None:
        node.fail(f"expected {DURATION_FORMS}, found {node.describe()}", "7, 7s, 500ms, 2m, 1h")
    if seconds <= 0 and not zero_ok:
        node.fail(f"{what} must be greater than 0, found {node.describe()}")
    if seconds > maximum:
        node.fail(
            f"{what} is {duration_clock(seconds)}; the most allowed is {duration_clock(maximum)}"
        )
    return seconds


def duration_clock(seconds: float) -> str:
    if not seconds < MAX_SESSION_S * 1000:  # also inf and nan: far beyond any limit
        return "far too long"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


_DB = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*db$", re.IGNORECASE)


def decibels(node: Node, what: str, low: float, high: float) -> float:
    value: float | None = None
    if node.is_scalar and node.tag not in (BOOL, NULL):
        raw = str(node.raw.value).strip()
        match = _DB.match(raw)
        if match:
            value = float(match.group(1))
        elif re.fullmatch(r"[+-]?\d+(?:\.\d+)?", raw):
            value = float(raw)
    if value is None:
        node.fail(f"expected {what} in dB like -20dB, found {node.describe()}")
    if not low <= value <= high:
        node.fail(f"{what} must be between {low:g}dB and {high:g}dB, found {value:g}dB")
    return value


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
