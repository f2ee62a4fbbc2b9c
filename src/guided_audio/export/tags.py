"""What an exported file carries besides its audio: tags, a chapter per section and a
cover, from the script and its timeline; as ffmpeg's metadata file for the formats ffmpeg
tags, and as Podcasting 2.0 JSON chapters beside every export.
"""

from __future__ import annotations

import datetime
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from guided_audio.dsp.effects import RATE
from guided_audio.plan.timeline import SectionSpan, Timeline, timestamp
from guided_audio.script.model import Script


@dataclass(frozen=True)
class Metadata:
    """Tags (ffmpeg's names: title, artist, album, comment, date, genre), chapters, a cover."""

    tags: Mapping[str, str] = field(default_factory=dict)
    chapters: tuple[SectionSpan, ...] = ()
    cover: Path | None = None


def _ffmetadata_text(value: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


VORBIS_COMMENT_FORMATS = (".flac", ".ogg", ".opus")


def ffmetadata(metadata: Metadata, suffix: str) -> str:
    """ffmpeg's metadata file: the tags, and a chapter per section. MP4 gets [CHAPTER]
    entries in exact samples; FLAC and Ogg get
    the CHAPTERnnn / CHAPTERnnnNAME comments players read (ffmpeg writes no others there)."""
    tags = dict(metadata.tags)
    if suffix in VORBIS_COMMENT_FORMATS:
        for number, chapter in enumerate(metadata.chapters, start=1):
            tags[f"CHAPTER{number:03d}"] = timestamp(chapter.start)
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


LIBRARY_NAME = "guided-audio"
GENRE = "Meditation"


def metadata(script: Script, timeline: Timeline) -> Metadata:
    """Tags, one chapter per section, and the cover, for every format that carries them."""
    tags = {
        "title": script.title,
        "album": script.album or LIBRARY_NAME,
        "date": str(datetime.date.today().year),
        "genre": GENRE,
    }
    if script.author:
        tags["artist"] = script.author
    if script.description:
        tags["comment"] = script.description
    return Metadata(tags, timeline.sections, script.cover)


def chapters_json(timeline: Timeline) -> str:
    """Podcasting 2.0 JSON chapters."""
    chapters = [
        {"startTime": round(s.start / RATE, 3), "title": s.title} for s in timeline.sections
    ]
    return json.dumps({"version": "1.2.0", "chapters": chapters}, indent=2, ensure_ascii=False)
