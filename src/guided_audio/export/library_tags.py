"""The tags and chapters a session's files carry, from its script and timeline."""

from __future__ import annotations

import datetime
import json

from guided_audio.dsp.effects import RATE
from guided_audio.export.tags import Chapter, Metadata
from guided_audio.plan.timeline import Timeline
from guided_audio.script.model import Script

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
    chapters = tuple(Chapter(s.title, s.start, s.end) for s in timeline.sections)
    return Metadata(tags, chapters, script.cover)


def chapters_json(timeline: Timeline) -> str:
    """Podcasting 2.0 JSON chapters."""
    chapters = [
        {"startTime": round(s.start / RATE, 3), "title": s.title} for s in timeline.sections
    ]
    return json.dumps({"version": "1.2.0", "chapters": chapters}, indent=2, ensure_ascii=False)
