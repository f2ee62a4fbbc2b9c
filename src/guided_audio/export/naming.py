"""Where an export goes by default, and file names safe on every system."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

from guided_audio.errors import UsageError
from guided_audio.plan.length import length_text

DEFAULT_FOLDER = Path("sessions")
_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)),
                   *(f"lpt{n}" for n in range(1, 10))}  # fmt: skip
MAX_NAME = 100


def safe_name(*parts: str) -> str:
    """A file name safe on every OS: lowercase letters, digits and dashes, not reserved."""
    words = [re.sub(r"[^a-z0-9]+", "-", part.casefold()).strip("-") for part in parts]
    name = "-".join(w for w in words if w)[:MAX_NAME].strip("-") or "session"
    return f"{name}-" if name in _RESERVED_NAMES else name


def default_output(
    path: Path,
    audio_format: str = "mp3",
    variables: Mapping[str, str] | None = None,
    folder: Path = DEFAULT_FOLDER,
    length_s: float | None = None,
) -> Path:
    """sessions/NAME.mp3; each --var value and a --length join the name
    (box-breathing-sam.mp3, body-scan-12m.mp3)."""
    length = () if length_s is None else (length_text(length_s),)
    return folder / f"{safe_name(path.stem, *(variables or {}).values(), *length)}.{audio_format}"


def output_path(
    script: Path,
    out: Path | None,
    audio_format: str | None,
    variables: Mapping[str, str] | None = None,
    length_s: float | None = None,
) -> Path:
    """-o (a file, or a folder for the default name), or the default name; a UsageError
    when -o and --format disagree."""
    if out is None or out.is_dir():
        folder = DEFAULT_FOLDER if out is None else out
        return default_output(script, audio_format or "mp3", variables, folder, length_s)
    if audio_format and out.suffix.lower() != f".{audio_format}":
        raise UsageError(f"-o {out} is not a .{audio_format} file, as --format {audio_format} asks")
    return out
