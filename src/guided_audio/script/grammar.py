"""The script format, declared once as data: every mapping's keys, their types, ranges,
defaults and one-line docs.

The validator (`script.py`) takes its keys, ranges and defaults from here; the JSON Schema
(`guided-audio schema`), the `new` starter and the format table in
`docs/writing-scripts.md` are generated from it, so none of them can drift from the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

ENGINES = ("piper", "espeak", "gtts")
BELLS = ("bowl", "chime", "gong")
BEDS = ("drone", "noise")
CUES = ("voice", "tone", "both", "none")
BILATERAL_SOUNDS = ("tap", "tone", "bell")  # generated; or an audio file
FLEX = ("auto", "none")  # `flex: none` keeps a step's length at every --length
PATTERNS = ("box", "4-7-8", "resonance", "sigh")
AUDIO_SUFFIXES = (".mp3", ".wav", ".ogg", ".flac")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
NO_MUSIC = ("none", "off", "no")  # `music: none` (or off, no, false, empty): no bed

MAX_PAUSE_S = 3600.0
MAX_SESSION_S = 4 * 3600.0
MAX_INNER_PAUSE_S = 10.0
MAX_GAP_S = 60.0
MAX_FADE_S = 600.0
MAX_PHASE_S = 120.0
MIN_PHASE_S = 0.5  # shorter is not a breath (and would make a session of millions of events)
MAX_EVENTS = 100_000  # sounds in one session: far above any real one, far below trouble
# How durations are written: parts in this order, each at most once (`1h30m`, `1m30.5s`,
# `500ms`). Seconds in one of the unit, and how many of it a part may hold when it follows a
# larger one: `1m90s` is written 2m30s. Only the last part may have a fraction.
DURATION_UNITS: tuple[tuple[str, Fraction, int], ...] = (
    ("h", Fraction(3600), 0),
    ("m", Fraction(60), 60),
    ("s", Fraction(1), 60),
    ("ms", Fraction(1, 1000), 1000),
)
# How a session stretches to a `--length`: which elements change, in which tier (the
# highest takes the change first; plan/fit.py), and their default bounds as fractions of
# their natural length. Speech, bells, sounds and clause pauses never change.
STRETCH = {
    "pause": (2, 0.5, 4.0),  # an explicit pause
    "silence": (2, 0.5, 4.0),  # a reflection's silence
    "breathe": (2, 0.5, 4.0),  # breathing written with `for:`, in whole cycles
    "bilateral": (2, 0.5, 2.0),  # a set of bilateral passes, in whole passes
    "gap": (1, 0.8, 1.5),  # after each step: moves least
    "sentence": (1, 0.8, 1.5),  # after each sentence, and an inline [pause]
}
MIN_LENGTH_S = 10.0  # a --length shorter than this is not a session
SCHEMA_ID = "https://guided-audio.invalid/script.schema.json"


@dataclass(frozen=True)
class Key:
    """One key of a mapping. `kind` names how its value is read (see KINDS)."""

    name: str
    kind: str
    doc: str
    required: bool = False
    default: Any = None
    low: float | None = None  # for numbers, decibels and durations
    high: float | None = None
    choices: tuple[str, ...] = ()
    example: Any = None  # what the starter template writes
    zero_ok: bool = False  # a duration of 0 is allowed (it means "none")
    what: str | None = None  # how messages name the value (default: the key's name)
    field: str | None = None  # the model's attribute it sets (default: the key's name)
    like: str | None = None  # a number: a value it could be, in messages
    hint: str | None = None  # a number: the hint under an out-of-range message
    image: bool = False  # a path: an image (else an audio file)

    @property
    def said_as(self) -> str:
        return self.what or self.name

    @property
    def attribute(self) -> str:
        return self.field or self.name

    @property
    def shown_default(self) -> str:
        if self.default is None:
            return ""
        if self.kind == "duration":
            return f"{self.default:g}s"
        if self.kind == "decibels":
            return f"{self.default:g}dB"
        return str(self.default)


KINDS = {
    "text": "text (quote it if it contains ': ' or starts with a symbol)",
    "said": "text to speak: {variables}, inline [pause 3s]",
    "duration": "7, 7s, 1.5s, 500ms, 2m, 1m30s, 1h",
    "number": "a number",
    "integer": "a whole number",
    "decibels": "-20dB (or a bare number of dB)",
    "choice": "one of the listed words",
    "boolean": "true or false",
    "path": "a file path, relative to the script",
    "mapping": "a mapping of its own keys",
    "list": "a list",
}

VOICE = (
    Key("engine", "choice", "speech engine: piper (offline, default), espeak (offline), "
        "gtts (online, sends text to Google)", default="piper", choices=ENGINES,
        example="piper"),
    Key("name", "text", "engine-specific voice (`guided-audio voices` lists them)"),
    Key("model", "path", "piper only: any Piper .onnx voice file, with its .onnx.json beside it"),
    Key("pace", "number", "speaking rate relative to the voice's guide pace", default=1.0,
        low=0.25, high=2.0, example=1.0, like="0.9",
        hint="1.0 is the voice's default, a guide's pace"),
    Key("gap", "duration", "silence after each step (an explicit pause replaces it)",
        default=3.5, low=0, high=MAX_GAP_S, zero_ok=True, field="gap_s"),
    Key("sentence_pause", "duration", "silence after each sentence inside a `say`",
        default=1.0, low=0, high=MAX_INNER_PAUSE_S, zero_ok=True, field="sentence_pause_s"),
    Key("clause_pause", "duration", "silence after a comma, semicolon, colon, dash or ellipsis",
        default=0.25, low=0, high=MAX_INNER_PAUSE_S, zero_ok=True, field="clause_pause_s"),
)  # fmt: skip

MUSIC = (
    Key("bed", "text", "a built-in bed (drone, noise) or an audio file (mp3, wav, ogg, flac)",
        required=True, choices=BEDS, example="drone"),
    Key("level", "decibels", "the bed's loudness relative to the voice", default=-20.0,
        low=-60, high=0, example="-22dB", field="level_db"),
    Key("duck", "decibels", "how far the bed dips while the voice speaks", default=8.0,
        low=0, high=40, example="8dB", field="duck_db"),
    Key("fade", "duration", "fade in and out (and the handover between sections' beds)",
        default=5.0, low=0, high=MAX_FADE_S, zero_ok=True, example="5s", field="fade_s"),
)  # fmt: skip

PATTERN = (
    Key("in", "duration", "breathing in", required=True, low=MIN_PHASE_S, high=MAX_PHASE_S,
        what="'in'"),
    Key("hold", "duration", "holding after the in-breath (0: none)", low=MIN_PHASE_S,
        high=MAX_PHASE_S, zero_ok=True, what="'hold'"),
    Key("out", "duration", "breathing out", required=True, low=MIN_PHASE_S, high=MAX_PHASE_S,
        what="'out'"),
    Key("rest", "duration", "resting after the out-breath (0: none)", low=MIN_PHASE_S,
        high=MAX_PHASE_S, zero_ok=True, what="'rest'"),
)  # fmt: skip

_FLEX_DOC = "none: the same length at every --length (auto: it stretches)"
BREATHE = (
    Key("pattern", "choice", "box (4-4-4-4), 4-7-8, resonance (5.5 in, 5.5 out), sigh "
        "(2 in, 1 in, 6 out), or a mapping {in, hold, out, rest}", required=True,
        choices=PATTERNS, example="box"),
    Key("cycles", "integer", "how many breaths (or `for` instead)", low=1, high=1000,
        example=4),
    Key("for", "duration", "how long, in whole breaths (or `cycles` instead); stretches with "
        "--length", low=0, high=MAX_PAUSE_S, what="'for'"),
    Key("cues", "choice", "what marks each phase: a spoken word, a rising or falling tone, "
        "both, or nothing", default="voice", choices=CUES, example="both"),
    Key("min_cycles", "integer", "the fewest breaths a --length may make it", low=1,
        high=1000),
    Key("max_cycles", "integer", "the most breaths a --length may make it", low=1, high=1000),
    Key("flex", "choice", _FLEX_DOC, default="auto", choices=FLEX),
)  # fmt: skip

PAUSE = (
    Key("for", "duration", "silence, exactly this long", required=True, low=0,
        high=MAX_PAUSE_S, what="pause"),
    Key("min", "duration", "the shortest a --length may make it", low=0, high=MAX_PAUSE_S,
        what="'min'"),
    Key("max", "duration", "the longest a --length may make it", low=0, high=MAX_PAUSE_S,
        what="'max'"),
    Key("flex", "choice", _FLEX_DOC, default="auto", choices=FLEX),
)  # fmt: skip

BELL = (
    Key("name", "choice", "a built-in, generated bell", required=True, choices=BELLS,
        example="bowl", what="bell"),
    Key("strikes", "integer", "how many times it is struck", default=1, low=1, high=12),
)  # fmt: skip

BILATERAL = (
    Key("for", "duration", "how long, in whole passes (or `passes` instead); stretches with "
        "--length", low=0, high=MAX_PAUSE_S, what="'for'", example="40s"),
    Key("passes", "integer", "how many sounds, alternating left and right (or `for`)",
        low=2, high=10000),
    Key("speed", "number", "passes a second: slow and calm", default=1.0, low=0.5, high=1.5,
        example=1.0, like="1.0"),
    Key("sound", "text", "a generated sound (tap, tone, bell) or an audio file",
        default="tap", example="tap"),
    Key("level", "decibels", "the sound's level", default=-6.0, low=-60, high=0),
    Key("pan", "number", "how far to each side: 1 fully, 0 the middle", default=1.0, low=0,
        high=1, like="0.8"),
    Key("say", "said", "spoken over the set, from its start (it must end within the set)",
        what="text to say"),
    Key("flex", "choice", _FLEX_DOC, default="auto", choices=FLEX),
)  # fmt: skip

REFLECT = (
    Key("question", "said", "a spoken question", required=True,
        example="What do you notice in your body right now?"),
    Key("silence", "duration", "then silence to reflect (`play --journal` asks it after)",
        default=30.0, low=0, high=MAX_PAUSE_S, example="30s"),
    Key("min", "duration", "the shortest a --length may make the silence", low=0,
        high=MAX_PAUSE_S, what="'min'"),
    Key("max", "duration", "the longest a --length may make the silence", low=0,
        high=MAX_PAUSE_S, what="'max'"),
    Key("flex", "choice", _FLEX_DOC, default="auto", choices=FLEX),
)  # fmt: skip

STEPS = (
    Key("say", "said", "speak text; sentences and clauses get their exact pauses",
        example="Welcome, {client}. You may stop at any time, and open your eyes.",
        what="text to say"),
    Key("pause", "duration", "silence, exactly this long (or {for, min, max, flex})", low=0,
        high=MAX_PAUSE_S, example="10s"),
    Key("breathe", "mapping", "paced breathing with cues"),
    Key("bell", "choice", "a bell: a name, or {name, strikes}", choices=BELLS, example="bowl"),
    Key("sound", "path", "an audio file (mp3, wav, ogg, flac), at its own length"),
    Key("reflect", "mapping", "a question, then a silence to reflect"),
    Key("bilateral", "mapping", "slow sounds alternating left and right (headphones)"),
)  # fmt: skip

SECTION = (
    Key("title", "text", "the chapter's title", required=True, example="Arriving"),
    Key("voice", "mapping", "changes to the script's voice for this section"),
    Key("music", "mapping", "this section's bed (or `none` for silence under it)"),
    Key("pronounce", "mapping", "more word -> respelling entries for this section"),
    Key("steps", "list", "what happens, in order", required=True),
    Key("optional", "boolean", "left out when a --length is shorter than the session can be "
        "with it", default=False),
    Key("priority", "integer", "of optional sections, the lowest is left out first (then the "
        "latest)", default=1, low=1, high=9),
)  # fmt: skip

SCRIPT = (
    Key("title", "text", "the session's title (the title tag)", required=True,
        example="A short arrival"),
    Key("description", "text", "a sentence or two about it (the comment tag)",
        example="A few minutes to arrive in the body, before or after a session."),
    Key("author", "text", "who wrote it (the artist tag)", example="Your name"),
    Key("album", "text", "the album tag (default: guided-audio)"),
    Key("cover", "path", "a PNG or JPEG of at most 5 MB, embedded as the front cover",
        image=True),
    Key("pronounce", "mapping", "word -> respelling, or Piper phonemes in [[ ]]"),
    Key("variables", "mapping", "defaults for {name} in text; `--var name=value` overrides"),
    Key("voice", "mapping", "the voice for the whole script"),
    Key("music", "mapping", "a bed under the whole session"),
    Key("sections", "list", "the chapters, in order", required=True),
)  # fmt: skip

MAPS: dict[str, tuple[Key, ...]] = {
    "the script": SCRIPT,
    "a section": SECTION,
    "voice": VOICE,
    "music": MUSIC,
    "breathe": BREATHE,
    "pause": PAUSE,
    "a breath pattern": PATTERN,
    "bell": BELL,
    "reflect": REFLECT,
    "bilateral": BILATERAL,
    "a step": STEPS,
}


def names(keys: tuple[Key, ...]) -> tuple[str, ...]:
    return tuple(k.name for k in keys)


def key(keys: tuple[Key, ...], name: str) -> Key:
    return next(k for k in keys if k.name == name)


def default(keys: tuple[Key, ...], name: str) -> Any:
    return key(keys, name).default
