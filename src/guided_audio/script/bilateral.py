"""Reading a `bilateral` step: a set of slow sounds alternating left and right, given by
`for` or `passes`, its speed, sound, level and pan, with located errors."""

from __future__ import annotations

import math
from pathlib import Path

from guided_audio.script import grammar as g
from guided_audio.script.kinds import Context, read_keys, read_value
from guided_audio.script.model import Bilateral, Say
from guided_audio.script.values import Problems, read_fields
from guided_audio.script.yamlnode import Node

AUDIO_SUFFIXES = (".mp3", ".wav", ".ogg", ".flac")


def read_bilateral(node: Node, context: Context, p: Problems) -> Bilateral:
    fields = read_fields(node, g.names(g.BILATERAL), "bilateral", p)
    if "for" in fields and "passes" in fields:
        fields["passes"][1].fail("give either 'for' or 'passes', not both")
    values = read_keys(g.BILATERAL, fields, context, p, ("speed", "level", "pan", "flex"))
    speed = float(values.get("speed", g.default(g.BILATERAL, "speed")))
    if "passes" in fields:
        passes = int(read_value(g.key(g.BILATERAL, "passes"), fields["passes"][1], context))
    elif "for" in fields:
        seconds = read_value(g.key(g.BILATERAL, "for"), fields["for"][1], context)
        passes = math.floor(seconds * speed + 1e-9)
        if passes < 2:
            fields["for"][1].fail(
                f"'for' gives fewer than two passes at speed {speed:g}",
                f"use at least {2 / speed:g}s",
            )
    else:
        node.fail("bilateral needs 'for' or 'passes'", "like for: 40s or passes: 40")
    sound: str | Path = str(g.default(g.BILATERAL, "sound"))
    if "sound" in fields:
        sound = _sound(fields["sound"][1], context)
    said: Say | None = None
    if "say" in fields:
        said = read_value(g.key(g.BILATERAL, "say"), fields["say"][1], context)
    fixed = values.get("flex", "auto") == "none"
    _, shortest, longest = g.STRETCH["bilateral"]
    span = None if fixed else (max(2, math.ceil(passes * shortest)), math.floor(passes * longest))
    return Bilateral(
        passes,
        speed,
        sound,
        float(values.get("level", g.default(g.BILATERAL, "level"))),
        float(values.get("pan", g.default(g.BILATERAL, "pan"))),
        span,
        said,
    )


def _sound(node: Node, context: Context) -> str | Path:
    """A generated sound by name, or an audio file beside the script."""
    name = str(read_value(g.key(g.BILATERAL, "sound"), node, context))
    if name in g.BILATERAL_SOUNDS:
        return name
    if Path(name).suffix.lower() in AUDIO_SUFFIXES:
        path: Path = read_value(g.key(g.STEPS, "sound"), node, context)
        return path
    node.fail(
        f"unknown sound '{name}'",
        "expected one of: " + ", ".join(g.BILATERAL_SOUNDS) + ", or an audio file",
    )
