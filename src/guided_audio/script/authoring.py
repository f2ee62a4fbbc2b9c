"""What authors get from the grammar: the JSON Schema editors check scripts with, the `new`
starter, and the format table of `docs/writing-scripts.md`. All three are generated from
`grammar.py`, like the validator's keys, ranges and defaults.
"""

from __future__ import annotations

import json
from fractions import Fraction
from importlib import resources
from pathlib import Path
from typing import Any

from guided_audio.script import grammar as g
from guided_audio.script import patterns
from guided_audio.script.grammar import Key
from guided_audio.script.patterns import Bound
from guided_audio.script.values import duration_clock

DRAFT = "https://json-schema.org/draft/2020-12/schema"
NONBLANK = r"\S"
WORD_PATTERN = r"^\w[\w'.\u2019-]*$"
SCHEMA_FILE = "script.schema.json"
# What an editor says when a value is not of its kind (JSON Schema's `errorMessage`, which
# yaml-language-server shows in place of "Incorrect type" and the pattern itself).
_WANTED = {
    "text": "expected text",
    "said": "expected text to say",
    "path": "expected a file path, relative to the script",
}


# --- JSON Schema ------------------------------------------------------------------------------
def duration_ranges(k: Key) -> list[tuple[Bound, Bound]]:
    """The durations key `k` allows, as ranges of seconds (a zero may stand apart)."""
    high: Bound = (Fraction(k.high if k.high is not None else g.MAX_PAUSE_S), True)
    zero: Bound = (Fraction(0), True)
    if k.low:
        return ([(zero, zero)] if k.zero_ok else []) + [((Fraction(k.low), True), high)]
    return [((Fraction(0), k.zero_ok), high)]


def _wanted(k: Key) -> str:
    if k.kind == "duration":
        top = duration_clock(float(k.high if k.high is not None else g.MAX_PAUSE_S))
        if k.low:
            span = f"from {k.low:g}s to {top}" + (", or 0" if k.zero_ok else "")
        else:
            span = f"{'from 0 ' if k.zero_ok else ''}up to {top}"
        return f"expected a duration like 7s or 1m30s, {span}"
    if k.kind == "decibels":
        return f"expected decibels like -20dB, from {k.low:g}dB to {k.high:g}dB"
    if k.kind == "number":
        return f"expected a number from {k.low:g} to {k.high:g}, like {k.like}"
    if k.kind == "integer":
        return f"expected a whole number from {k.low:g} to {k.high:g}"
    if k.kind == "choice":
        return "expected one of: " + ", ".join(k.choices)
    if k.kind == "boolean":
        return "expected true or false"
    return _WANTED[k.kind]


def _value(k: Key) -> dict[str, Any]:
    """The schema of one key's value (without its description)."""
    # The key's name first: the editor shows one of two equal messages on a line.
    wanted = {"errorMessage": f"{k.name}: {_wanted(k)}"}
    if k.kind in ("text", "said", "path"):
        return {"type": "string", "pattern": NONBLANK, **wanted}
    if k.kind == "duration":
        ranges = duration_ranges(k)
        (low, _), (high, _) = ranges[-1]
        number: dict[str, Any] = {"type": ["number", "string"]}
        number["minimum" if k.zero_ok else "exclusiveMinimum"] = 0
        number["maximum"] = float(high)
        if low > 0 and k.zero_ok:
            number["not"] = {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": k.low}
        elif low > 0:
            number["minimum"] = float(low)
            del number["exclusiveMinimum"]
        return {**number, "pattern": patterns.duration_pattern(ranges), **wanted}
    if k.kind == "decibels":
        return {
            "type": ["number", "string"],
            "minimum": k.low,
            "maximum": k.high,
            "pattern": patterns.decibels_pattern(float(k.low or 0), float(k.high or 0)),
            **wanted,
        }
    if k.kind in ("number", "integer"):
        return {"type": k.kind, "minimum": k.low, "maximum": k.high, **wanted}
    if k.kind == "choice":
        return {"enum": list(k.choices), **wanted}
    if k.kind == "boolean":
        return {"type": "boolean", **wanted}
    raise AssertionError(k)


def _object(keys: tuple[Key, ...], special: dict[str, dict[str, Any]]) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for k in keys:
        value = special.get(k.name) or _value(k)
        properties[k.name] = {"description": k.doc, **value}
        if k.default is not None:
            properties[k.name]["default"] = k.default
        elif k.example is not None and k.kind not in ("mapping", "list"):
            properties[k.name]["examples"] = [k.example]  # what completion writes
    out: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    required = [k.name for k in keys if k.required]
    if required:
        out["required"] = required
    return out


def _choices(what: str, choices: tuple[str, ...]) -> str:
    return f"expected {what}: {', '.join(choices[:-1])} or {choices[-1]}, or a mapping"


def _bed() -> dict[str, Any]:
    suffixes = "|".join(
        "".join(f"[{c}{c.upper()}]" if c.isalpha() else c for c in suffix[1:])
        for suffix in g.AUDIO_SUFFIXES
    )
    return {
        "type": "string",
        "pattern": rf"^({'|'.join(g.BEDS)})$|\.({suffixes})$|/",
        "examples": list(g.BEDS),
        "errorMessage": f"expected a built-in bed ({', '.join(g.BEDS)}) or an audio file "
        "(mp3, wav, ogg, flac)",
    }


def _bilateral() -> dict[str, Any]:
    sounds = ", ".join(g.BILATERAL_SOUNDS)
    sound = {
        "type": "string",
        "anyOf": [{"enum": list(g.BILATERAL_SOUNDS)}, {"pattern": r"(?i)\.(mp3|wav|ogg|flac)$"}],
        "errorMessage": f"sound: expected one of: {sounds}, or an audio file",
    }
    schema = _object(g.BILATERAL, {"sound": sound})
    schema["anyOf"] = [{"required": ["passes"]}, {"required": ["for"]}]
    # Both given: the error stands on 'passes', where validate puts it.
    schema["dependentSchemas"] = {
        "for": {
            "properties": {
                "passes": {"not": {}, "errorMessage": "give either 'for' or 'passes', not both"}
            }
        }
    }
    return schema


def _pause() -> dict[str, Any]:
    """A duration, or a mapping {for, min, max, flex}: one schema (a duration's checks
    apply to numbers and text, the mapping's to mappings), so a wrong duration still gets
    the duration's message."""
    duration = _value(g.key(g.STEPS, "pause"))
    message = duration.pop("errorMessage")
    # The mapping's keys sit behind if/then: a schema with `properties` at the top would
    # make completion write `pause:` as a mapping, where `pause: 10s` is what most want.
    return {
        **duration,
        "type": [*duration["type"], "object"],
        "patternErrorMessage": message,
        "examples": ["10s"],
        "if": {"type": "object"},
        "then": {"$ref": "#/$defs/pause"},
    }


def json_schema() -> dict[str, Any]:
    """The script format as JSON Schema (draft 2020-12)."""
    music = {"$ref": "#/$defs/music"}
    # A mapping, or `none` (off, no, false, nothing): one schema, not an anyOf, so a wrong
    # word gets this message rather than "Incorrect type".
    music_def = {
        **_object(g.MUSIC, {"bed": _bed()}),
        "type": ["object", "string", "null", "boolean"],
        "pattern": "^(" + "|".join(g.NO_MUSIC) + ")$",
        "patternErrorMessage": "expected a music bed like {bed: drone}, or none",
        "not": {"const": True},
    }
    pattern = {
        "anyOf": [
            {"enum": list(g.PATTERNS), "errorMessage": _choices("a breath pattern", g.PATTERNS)},
            {"$ref": "#/$defs/pattern"},
        ]
    }
    pronounce = {
        "type": "object",
        "propertyNames": {"pattern": WORD_PATTERN, "errorMessage": "a key is one word"},
        "additionalProperties": {"type": "string", "pattern": NONBLANK},
    }
    variables = {
        "type": "object",
        "propertyNames": {"pattern": r"^[A-Za-z_][A-Za-z0-9_]*$"},
        "additionalProperties": {"type": ["string", "number"]},
    }
    breathe = _object(g.BREATHE, {"pattern": pattern})
    breathe["oneOf"] = [{"required": ["cycles"]}, {"required": ["for"]}]
    steps_special: dict[str, dict[str, Any]] = {
        "breathe": {"$ref": "#/$defs/breathe"},
        "bell": {
            "anyOf": [
                {"enum": list(g.BELLS), "errorMessage": _choices("a bell", g.BELLS)},
                {"$ref": "#/$defs/bell"},
            ]
        },
        "reflect": {"$ref": "#/$defs/reflect"},
        "pause": _pause(),
        "bilateral": _bilateral(),
    }
    # One object with every kind as a property (not a oneOf of six), so an editor offers
    # the kinds by name as you type and names a misspelt one without follow-ons.
    step = _object(g.STEPS, steps_special)
    step["minProperties"] = step["maxProperties"] = 1
    step["errorMessage"] = "a step is one of: " + ", ".join(g.names(g.STEPS))
    section = _object(
        g.SECTION,
        {
            "voice": {"$ref": "#/$defs/voice"},
            "music": music,
            "pronounce": pronounce,
            "steps": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}},
        },
    )
    script = _object(
        g.SCRIPT,
        {
            "pronounce": pronounce,
            "variables": variables,
            "voice": {"$ref": "#/$defs/voice"},
            "music": music,
            "sections": {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/section"}},
        },
    )
    return {
        "$schema": DRAFT,
        "$id": g.SCHEMA_ID,
        "title": "guided-audio script",
        "description": "A guided session: sections of steps (say, pause, breathe, bell, "
        "sound, reflect) rendered to exactly timed audio. `guided-audio validate` checks "
        "what a schema cannot (files, variables, timing).",
        **script,
        "$defs": {
            "voice": _object(g.VOICE, {}),
            "music": music_def,
            "pattern": _object(g.PATTERN, {}),
            "breathe": breathe,
            "pause": _object(g.PAUSE, {}),
            "bell": _object(g.BELL, {}),
            "reflect": _object(g.REFLECT, {}),
            "step": step,
            "section": section,
        },
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def shipped_schema() -> str:
    """The schema file shipped in the package (tests check it equals `schema_text()`)."""
    return resources.files("guided_audio").joinpath(SCHEMA_FILE).read_text(encoding="utf-8")


def schema_path() -> Path:
    return Path(str(resources.files("guided_audio").joinpath(SCHEMA_FILE)))


def modeline(schema: str) -> str:
    """The first line that makes yaml-language-server (VS Code, Neovim) check a script."""
    return f"# yaml-language-server: $schema={schema}"


# --- the starter ------------------------------------------------------------------------------
def _example(k: Key) -> str:
    value = k.example if k.example is not None else k.shown_default
    return json.dumps(value) if isinstance(value, str) and (": " in value) else str(value)


def starter(title: str, schema: str) -> str:
    """A commented script that validates: every key, its default and what it does."""
    lines = [
        modeline(schema),
        "# A guided-audio session. Check it: guided-audio validate THIS_FILE",
        '# Hear a line: guided-audio say "text" --script THIS_FILE',
        f"title: {json.dumps(title, ensure_ascii=False)}",
    ]
    for k in g.SCRIPT:
        if k.name in ("title", "sections", "voice", "music", "pronounce", "variables"):
            continue
        prefix = "" if k.example is not None else "# "
        lines.append(f"{prefix}{k.name}: {_example(k) if k.example else '...'}  # {k.doc}")
    lines.append("variables:  # {client} in text; `--var client=Sam` overrides")
    lines.append("  client: friend")
    lines.append("# pronounce:  # word -> respelling, or Piper phonemes in [[ ]]")
    lines.append("#   Reyes: RAY-ess")
    lines.append("voice:  # every key is optional; these are the defaults")
    for k in g.VOICE:
        if k.default is None:
            lines.append(f"  # {k.name}: ...  # {k.doc}")
        else:
            lines.append(f"  {k.name}: {k.shown_default}  # {k.doc}")
    lines.append("music:  # a bed under the whole session; remove this block for none")
    for k in g.MUSIC:
        lines.append(f"  {k.name}: {_example(k)}  # {k.doc}")
    lines += [
        "sections:  # each section is a chapter",
        "  - title: Arriving",
        "    steps:",
        "      - bell: bowl",
        "      - say: Welcome, {client}. You can stop at any time, and open your eyes.",
        "      - say: Let your body be supported by whatever is beneath you.",
        "      - pause: 10s  # exactly ten seconds of silence",
        "  - title: Breathing",
        "    steps:",
        "      - say: Let's breathe together. Follow the voice and the tone.",
        "      - breathe:",
        "          pattern: box  # " + g.key(g.BREATHE, "pattern").doc,
        "          cycles: 4",
        "          cues: both  # " + g.key(g.BREATHE, "cues").doc,
        "  - title: Returning",
        "    steps:",
        "      - reflect:",
        "          question: What do you notice in your body right now?",
        "          silence: 30s",
        "      - say: When you are ready, open your eyes.",
        "      - bell: {name: chime, strikes: 2}",
    ]
    return "\n".join(lines) + "\n"


# --- the format table -------------------------------------------------------------------------
def format_table() -> str:
    """Markdown: every mapping's keys, their kind, default and what they do."""
    out: list[str] = []
    for where, keys in g.MAPS.items():
        out += [
            f"**{where}**",
            "",
            "| key | value | default | what it is |",
            "| --- | --- | --- | --- |",
        ]
        for k in keys:
            value = g.KINDS[k.kind]
            if k.choices:
                value = " / ".join(k.choices) + ("" if k.kind == "choice" else f"; {value}")
            if k.low is not None and k.high is not None and k.kind != "duration":
                value += f" ({k.low:g} to {k.high:g})"
            elif k.kind == "duration" and k.high is not None:
                value += f" (at most {k.high:g} s)"
            default = "required" if k.required else (k.shown_default or "—")
            out.append(f"| `{k.name}` | {value} | {default} | {k.doc} |")
        out.append("")
    return "\n".join(out)
