"""The shared model every stage reads: a validated script and its parts, immutable.

Stage 1 (`script.py`) builds it; later stages only read it. Defaults come from the grammar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from guided_audio.script.grammar import MUSIC, VOICE, default


@dataclass(frozen=True)
class VoiceSpec:
    engine: str = default(VOICE, "engine")
    name: str | None = None  # None: the engine's default voice
    model: Path | None = None  # piper only: a .onnx voice file
    pace: float = default(VOICE, "pace")
    gap_s: float = default(VOICE, "gap")  # between steps: room to take in what was said
    sentence_pause_s: float = default(VOICE, "sentence_pause")
    clause_pause_s: float = default(VOICE, "clause_pause")


@dataclass(frozen=True)
class Phrase:
    """The unit of speech: one text in one voice. Inline pauses split a `say` into phrases."""

    text: str
    voice: VoiceSpec


@dataclass(frozen=True)
class Bounds:
    """What a `--length` may do to a silence: its shortest and longest (None: the grammar's
    default), or nothing at all (`fixed`)."""

    min_s: float | None = None
    max_s: float | None = None
    fixed: bool = False


@dataclass(frozen=True)
class Pause:
    seconds: float
    bounds: Bounds = Bounds()


@dataclass(frozen=True)
class Say:
    """Spoken text: phrases separated by exact inline pauses."""

    parts: tuple[str | Pause, ...]

    @property
    def text(self) -> str:
        return " ".join(p for p in self.parts if isinstance(p, str))


@dataclass(frozen=True)
class Phase:
    kind: str  # in | hold | out | rest
    seconds: float


@dataclass(frozen=True)
class BreathPattern:
    name: str
    phases: tuple[Phase, ...]

    @property
    def cycle_s(self) -> float:
        return sum(p.seconds for p in self.phases)


BREATH_PATTERNS: dict[str, BreathPattern] = {
    "box": BreathPattern(
        "box", (Phase("in", 4), Phase("hold", 4), Phase("out", 4), Phase("hold", 4))
    ),
    "4-7-8": BreathPattern("4-7-8", (Phase("in", 4), Phase("hold", 7), Phase("out", 8))),
    "resonance": BreathPattern("resonance", (Phase("in", 5.5), Phase("out", 5.5))),
    "sigh": BreathPattern("sigh", (Phase("in", 2), Phase("in", 1), Phase("out", 6))),
}


@dataclass(frozen=True)
class Breathe:
    pattern: BreathPattern
    cycles: int
    cues: str = "voice"
    # Whole cycles a --length may give it; None: it keeps its count (written with cycles:).
    cycle_range: tuple[int, int] | None = None


@dataclass(frozen=True)
class Bell:
    name: str
    strikes: int = 1


@dataclass(frozen=True)
class Sound:
    path: Path


@dataclass(frozen=True)
class Reflect:
    question: Say
    silence_s: float
    bounds: Bounds = Bounds()


@dataclass(frozen=True)
class Bilateral:
    """A set of slow sounds alternating left and right, starting on the left."""

    passes: int
    speed: float = 1.0  # passes a second
    sound: str | Path = "tap"  # a generated sound's name, or an audio file
    level_db: float = -6.0
    pan: float = 1.0  # 1: each sound on its side only; 0: both in the middle
    pass_range: tuple[int, int] | None = None  # the whole passes a --length may give it
    say: Say | None = None  # spoken over the set, from its start


StepKind = Say | Pause | Breathe | Bell | Sound | Reflect | Bilateral


@dataclass(frozen=True)
class Step:
    kind: StepKind
    line: int  # where the step is written, for messages from later stages
    column: int


@dataclass(frozen=True)
class Music:
    bed: str | Path  # a built-in bed name, or an audio file
    level_db: float = default(MUSIC, "level")
    duck_db: float = default(MUSIC, "duck")
    fade_s: float = default(MUSIC, "fade")


Pronounce = tuple[tuple[str, str], ...]  # word (casefolded) -> respelling or [[ phonemes ]]


@dataclass(frozen=True)
class Section:
    title: str
    voice: VoiceSpec
    music: Music | None
    steps: tuple[Step, ...]
    pronounce: Pronounce = ()
    optional: bool = False  # left out when a --length is too short for it
    priority: int = 1  # of optional sections, the lowest is left out first


@dataclass(frozen=True)
class Script:
    path: Path
    title: str
    sections: tuple[Section, ...]
    description: str | None = None
    author: str | None = None
    album: str | None = None  # the album tag; None: the library's name
    cover: Path | None = None  # a PNG or JPEG embedded as the front cover
    variables: Mapping[str, str] = field(default_factory=dict)
    voice: VoiceSpec = field(default_factory=VoiceSpec)
    music: Music | None = None
    pronounce: Pronounce = ()

    @property
    def name(self) -> str:
        return self.path.stem
