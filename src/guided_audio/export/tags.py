"""What an exported file carries besides its audio: tags, chapters and a cover, as
ffmpeg's metadata file for the formats ffmpeg tags.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from guided_audio.dsp.effects import RATE


@dataclass(frozen=True)
class Chapter:
    title: str
    start: int  # samples
    end: int


@dataclass(frozen=True)
class Metadata:
    """Tags (ffmpeg's names: title, artist, album, comment, date, genre), chapters, a cover."""

    tags: Mapping[str, str] = field(default_factory=dict)
    chapters: tuple[Chapter, ...] = ()
    cover: Path | None = None


def _ffmetadata_text(value: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


VORBIS_COMMENT_FORMATS = (".flac", ".ogg", ".opus")


def _chapter_time(samples: int) -> str:
    millis = round(samples * 1000 / RATE)
    seconds, millis = divmod(millis, 1000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{millis:03d}"


def ffmetadata(metadata: Metadata, suffix: str) -> str:
    """ffmpeg's metadata file: the tags, and a chapter per section. MP4 gets [CHAPTER]
    entries in exact samples; FLAC and Ogg get
    the CHAPTERnnn / CHAPTERnnnNAME comments players read (ffmpeg writes no others there)."""
    tags = dict(metadata.tags)
    if suffix in VORBIS_COMMENT_FORMATS:
        for number, chapter in enumerate(metadata.chapters, start=1):
            tags[f"CHAPTER{number:03d}"] = _chapter_time(chapter.start)
            tags[f"CHAPTER{number:03d}NAME"] = chapter.title
    lines = [";FFMETADATA1"]
    lines += [f"{key}={_ffmetadata_text(value)}" for key, value in tags.items()]
    if suffix not in VORBIS_COMMENT_FORMATS:
        for chapter in metadata.chapters:
            lines += [
                "[CHAPTER]",
                f"TIMEBASE=1/{RATE}",
                f"START={chapter.start}",
                f"END={chapter.end}",
                f"title={_ffmetadata_text(chapter.title)}",
            ]
    return "\n".join(lines) + "\n"
