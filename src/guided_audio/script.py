"""Stage 1: load a script file and validate it into an immutable model.

Every problem in a file is collected (not just the first) and reported with its
FILE:LINE:COL through `ScriptError`. Nothing here renders audio or touches the network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Protocol, TypeVar

import yaml

from guided_audio import grammar as g
from guided_audio.errors import Invalid, Problem, ScriptError, UsageError
from guided_audio.grammar import (
    AUDIO_SUFFIXES,
    BEDS,
    BELLS,
    CUES,
    ENGINES,
    MAX_PAUSE_S,
    MAX_SESSION_S,
)
from guided_audio.model import (
    BREATH_PATTERNS,
    Bell,
    Breathe,
    BreathPattern,
    Music,
    Pause,
    Phase,
    Pronounce,
    Reflect,
    Say,
    Script,
    Section,
    Sound,
    Step,
    StepKind,
    VoiceSpec,
)
from guided_audio.yamlnode import BOOL, NULL, Node, load, suggest

# --- collecting problems ---------------------------------------------------------------------
T = TypeVar("T")


class _Problems:
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


def _fields(
    node: Node, allowed: tuple[str, ...], where: str, p: _Problems
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


def _duration(node: Node, what: str, maximum: float = MAX_PAUSE_S, zero_ok: bool = False) -> float:
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
        node.fail(f"{what} is {_clock(seconds)}; the most allowed is {_clock(maximum)}")
    return seconds


def _clock(seconds: float) -> str:
    if not seconds < MAX_SESSION_S * 1000:  # also inf and nan: far beyond any limit
        return "far too long"
    seconds = round(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


_DB = re.compile(r"^([+-]?\d+(?:\.\d+)?)\s*db$", re.IGNORECASE)


def _decibels(node: Node, what: str, low: float, high: float) -> float:
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


def _int(node: Node, what: str, low: int, high: int) -> int:
    value = node.number(f"{what} (a whole number)")
    if value != int(value):
        node.fail(f"expected {what} as a whole number, found {node.describe()}")
    if not low <= value <= high:
        node.fail(f"{what} must be from {low} to {high}, found {int(value)}")
    return int(value)


def _ranged_db(keys: tuple[g.Key, ...], name: str, node: Node) -> float:
    k = g.key(keys, name)
    return _decibels(node, name, float(k.low or 0), float(k.high or 0))


def _ranged_int(keys: tuple[g.Key, ...], name: str, node: Node) -> int:
    k = g.key(keys, name)
    return _int(node, name, int(k.low or 0), int(k.high or 0))


def _choice(node: Node, what: str, choices: tuple[str, ...]) -> str:
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
def _file_errors(node: Node, what: str, raw: str) -> Iterator[None]:
    """A path the system cannot even look at (too long, unreadable) is a located error."""
    try:
        yield
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        shown = raw if len(raw) <= 60 else raw[:59] + "…"
        node.fail(f"cannot read the {what} file '{shown}': {reason}")


def _audio_file(node: Node, base: Path, what: str) -> Path:
    raw = node.text(f"{what} path")
    with _file_errors(node, what, raw):
        path = (base / raw).resolve()
        if not path.exists():
            node.fail(f"{what} file '{raw}' does not exist", f"paths are relative to {base}")
        if not path.is_file():
            node.fail(f"{what} '{raw}' is not a file")
        if path.suffix.lower() not in AUDIO_SUFFIXES or not _looks_like_audio(path):
            node.fail(f"{what} file '{raw}' is not audio", "use an mp3, wav, ogg or flac file")
    return path


# --- spoken text -----------------------------------------------------------------------------
_INLINE_PAUSE = re.compile(r"^(?:pause\s+)?(\S+)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _spoken(node: Node, variables: Mapping[str, str], what: str = "text") -> Say:
    raw = node.text(what)
    parts: list[str | Pause] = []
    buffer: list[str] = []
    i = 0

    def at(offset: int, message: str, hint: str | None = None) -> Invalid:
        try:
            node.fail(message, hint, node.scalar_column(offset))
        except Invalid as exc:
            return exc

    while i < len(raw):
        ch = raw[i]
        if raw.startswith("{{", i) or raw.startswith("}}", i):
            buffer.append(ch)
            i += 2
        elif ch == "{":
            end = raw.find("}", i)
            name = raw[i + 1 : end].strip() if end != -1 else ""
            if end == -1:
                raise at(i, "unclosed '{' in text", "write {{ for a literal brace")
            if not _NAME.match(name):
                raise at(i, f"'{raw[i : end + 1]}' is not a variable", "template code is not run")
            if name not in variables:
                known = sorted(variables)
                hint = suggest(name, known) if known else "define it under 'variables:'"
                raise at(i, f"undefined variable '{{{name}}}'", hint)
            buffer.append(variables[name])
            i = end + 1
        elif ch == "}":
            raise at(i, "single '}' in text", "write }} for a literal brace")
        elif ch == "[":
            end = raw.find("]", i)
            if end == -1:
                raise at(i, "unclosed '[' in text", "inline pauses look like [pause 3s]")
            tag = raw[i + 1 : end].strip()
            match = _INLINE_PAUSE.match(tag)
            seconds = duration_from_text(match.group(1)) if match else None
            if seconds is None or seconds <= 0:
                raise at(
                    i, f"unknown inline tag '[{tag}]'", "inline pauses look like [pause 3s] or [3s]"
                )
            if seconds > MAX_PAUSE_S:
                raise at(i, f"inline pause is {_clock(seconds)}; the most allowed is 1h")
            parts.append("".join(buffer))
            parts.append(Pause(seconds))
            buffer = []
            i = end + 1
        elif ch == "<" and re.match(r"</?[A-Za-z!?%]", raw[i:]):
            raise at(i, "markup tags are not supported in text", "use [pause 3s] for a pause")
        else:
            buffer.append(ch)
            i += 1
    parts.append("".join(buffer))
    cleaned: list[str | Pause] = []
    for part in parts:
        if isinstance(part, Pause):
            cleaned.append(part)
        elif re.search(r"\w", part):
            cleaned.append(" ".join(part.split()))
    if not any(isinstance(p, str) for p in cleaned):
        node.fail(f"{what} has nothing to say", "use a 'pause' step for silence")
    return Say(tuple(cleaned))


def _plain(node: Node, variables: Mapping[str, str], what: str) -> str:
    """A title-like text with variables expanded and no pauses."""
    said = _spoken(node, variables, what)
    if any(isinstance(p, Pause) for p in said.parts):
        node.fail(f"{what} cannot contain pauses")
    return said.text


# --- sections and steps ----------------------------------------------------------------------
_STEP_KINDS = g.names(g.STEPS)
_PACE = g.key(g.VOICE, "pace")


def _model_file(node: Node, base: Path, raw: str) -> Path:
    model = (base / raw).resolve()
    if not model.is_file():
        node.fail(f"voice model '{raw}' does not exist", f"paths are relative to {base}")
    if model.suffix != ".onnx":
        node.fail(f"voice model '{raw}' is not a Piper .onnx file")
    if not Path(f"{model}.json").is_file():
        node.fail(f"voice model '{raw}' has no '{model.name}.json' beside it")
    return model


PACE_RANGE = (float(_PACE.low or 0), float(_PACE.high or 0))


class Catalog(Protocol):
    """What the voice stage knows about installed voices, asked while validating."""

    def names(self, engine: str) -> list[str] | None:
        """Voice names an engine accepts, or None when they cannot be known here."""
        ...

    def phonemes(self, spec: VoiceSpec) -> frozenset[str] | None:
        """The phonemes a Piper voice knows, or None when there is no voice to ask."""
        ...


class NoCatalog:
    """Checks nothing about installed voices (the voice stage supplies a real catalog)."""

    def names(self, engine: str) -> list[str] | None:
        return None

    def phonemes(self, spec: VoiceSpec) -> frozenset[str] | None:
        return None


def _bounded(keys: tuple[g.Key, ...], name: str, node: Node, what: str | None = None) -> float:
    """A duration key read with the grammar's bounds."""
    k = g.key(keys, name)
    seconds = _duration(node, what or name, float(k.high or MAX_PAUSE_S), zero_ok=k.zero_ok)
    if k.low and 0 < seconds < k.low:
        node.fail(f"{what or name} must be at least {k.low:g}s, found {node.describe()}")
    return seconds


def _voice(
    node: Node, base: Path, inherited: VoiceSpec, p: _Problems, catalog: Catalog
) -> VoiceSpec:
    fields = _fields(node, g.names(g.VOICE), "voice", p)
    spec = inherited
    if "engine" in fields:
        engine = p.get(lambda: _choice(fields["engine"][1], "engine", ENGINES), None)
        if engine and engine != spec.engine:
            spec = replace(spec, engine=engine, name=None, model=None)
    if "name" in fields:
        name_node = fields["name"][1]
        name = p.get(lambda: name_node.text("voice name"), None)
        if name:
            with p.collect():
                known = catalog.names(spec.engine)
                if known is not None and name not in known:
                    name_node.fail(
                        f"unknown {spec.engine} voice '{name}'",
                        suggest(name, tuple(known)) + " (`guided-audio voices` lists them)",
                    )
                spec = replace(spec, name=name)
    if "model" in fields:
        model_node = fields["model"][1]
        with p.collect():
            if spec.engine != "piper":
                model_node.fail("'model' is only for the piper engine")
            raw = model_node.text("model path")
            with _file_errors(model_node, "voice model", raw):
                spec = replace(spec, model=_model_file(model_node, base, raw), name=None)
    if "pace" in fields:
        pace_node = fields["pace"][1]
        with p.collect():
            pace = pace_node.number("a pace like 0.9")
            low, high = PACE_RANGE
            if not low <= pace <= high:
                pace_node.fail(
                    f"pace must be from {low:g} to {high:g}, found {pace:g}",
                    "1.0 is the voice's default, a guide's pace",
                )
            spec = replace(spec, pace=pace)
    if "gap" in fields:
        gap = p.get(lambda: _bounded(g.VOICE, "gap", fields["gap"][1]), None)
        if gap is not None:
            spec = replace(spec, gap_s=gap)
    if "sentence_pause" in fields:
        with p.collect():
            node = fields["sentence_pause"][1]
            spec = replace(spec, sentence_pause_s=_bounded(g.VOICE, "sentence_pause", node))
    if "clause_pause" in fields:
        with p.collect():
            node = fields["clause_pause"][1]
            spec = replace(spec, clause_pause_s=_bounded(g.VOICE, "clause_pause", node))
    return spec


PHONEME_HINT = "Piper phonemes (espeak IPA) look like [[ ɹˈeɪz ]]; a space parts words"
_PRONOUNCE_WORD = re.compile(r"^[\w][\w'.\u2019-]*$")
_PHONEMES = re.compile(r"^\[\[(.*)\]\]$", re.DOTALL)


def _pronounce(
    node: Node, inherited: Pronounce, spec: VoiceSpec, p: _Problems, catalog: Catalog
) -> Pronounce:
    """A word -> respelling (or [[ Piper phonemes ]]) map, added to what is inherited."""
    entries = dict(inherited)
    if not node.is_mapping:
        node.fail(f"expected a mapping of word: respelling, found {node.describe()}")
    for word, key, value in node.items():
        with p.collect():
            if not _PRONOUNCE_WORD.match(word):
                key.fail(
                    f"'{word}' is not a single word", "pronounce maps one word to how it sounds"
                )
            said = value.text(f"how '{word}' is said")
            match = _PHONEMES.match(said.strip())
            if match:
                _check_phonemes(value, match.group(1), spec, catalog)
            elif "[" in said or "]" in said:
                value.fail(f"malformed phonemes '{said}'", PHONEME_HINT)
            entries[word.casefold()] = said.strip()
    return tuple(entries.items())


def _check_phonemes(node: Node, phonemes: str, spec: VoiceSpec, catalog: Catalog) -> None:
    if not phonemes.strip():
        node.fail("empty phonemes in [[ ]]", PHONEME_HINT)
    known = catalog.phonemes(spec if spec.engine == "piper" else VoiceSpec())
    if known is None:
        return  # no Piper voice to check against; the engine reports it when speaking
    offset = node.raw.value.find(phonemes) if isinstance(node.raw.value, str) else 0
    for index, phoneme in enumerate(phonemes):
        if not phoneme.isspace() and phoneme not in known:
            node.fail(
                f"'{phoneme}' is not a phoneme of this Piper voice",
                PHONEME_HINT,
                node.scalar_column(offset + index),
            )


def _music(node: Node, base: Path, p: _Problems) -> Music | None:
    if node.is_scalar and (node.tag in (NULL, BOOL) or str(node.raw.value) == "none"):
        if node.tag == BOOL and str(node.raw.value).lower() in ("true", "yes", "on"):
            node.fail("expected a music bed, found 'yes'", "write music: {bed: drone}")
        return None
    fields = _fields(node, g.names(g.MUSIC), "music", p)
    if "bed" not in fields:
        node.fail("music needs a 'bed'", "a built-in bed (drone, noise) or an audio file")
    bed_node = fields["bed"][1]
    bed: str | Path = "drone"
    with p.collect():
        name = bed_node.text("bed")
        if name in BEDS:
            bed = name
        elif Path(name).suffix.lower() in AUDIO_SUFFIXES or "/" in name:
            bed = _audio_file(bed_node, base, "music bed")
        else:
            bed_node.fail(f"unknown music bed '{name}'", suggest(name, BEDS) + " or an audio file")
    music = Music(bed)
    if "level" in fields:
        level = p.get(lambda: _ranged_db(g.MUSIC, "level", fields["level"][1]), None)
        music = replace(music, level_db=level) if level is not None else music
    if "duck" in fields:
        duck = p.get(lambda: _ranged_db(g.MUSIC, "duck", fields["duck"][1]), None)
        music = replace(music, duck_db=duck) if duck is not None else music
    if "fade" in fields:
        fade = p.get(lambda: _bounded(g.MUSIC, "fade", fields["fade"][1]), None)
        music = replace(music, fade_s=fade) if fade is not None else music
    return music


def _pattern(node: Node, p: _Problems) -> BreathPattern:
    if node.is_scalar:
        name = node.text("breath pattern")
        if name not in BREATH_PATTERNS:
            node.fail(
                f"unknown breath pattern '{name}'",
                suggest(name, (*BREATH_PATTERNS, "{in: 4, hold: 7, out: 8, rest: 0}")),
            )
        return BREATH_PATTERNS[name]
    fields = _fields(node, g.names(g.PATTERN), "a breath pattern", p)
    phases = []
    for phase in g.PATTERN:
        kind = phase.name
        if kind not in fields:
            if phase.required:
                node.fail(f"a custom breath pattern needs '{kind}'", "like {in: 4, out: 6}")
            continue
        seconds = _bounded(g.PATTERN, kind, fields[kind][1], f"'{kind}'")
        if seconds > 0:
            phases.append(Phase(kind, seconds))
    return BreathPattern("custom", tuple(phases))


def _breathe(node: Node, p: _Problems) -> Breathe:
    fields = _fields(node, g.names(g.BREATHE), "breathe", p)
    if "pattern" not in fields:
        node.fail("breathe needs a 'pattern'", suggest("", tuple(BREATH_PATTERNS)))
    pattern = _pattern(fields["pattern"][1], p)
    cues = str(g.default(g.BREATHE, "cues"))
    if "cues" in fields:
        cues = p.get(lambda: _choice(fields["cues"][1], "cues", CUES), cues)
    if "cycles" in fields and "for" in fields:
        fields["for"][0].fail("give either 'cycles' or 'for', not both")
    if "cycles" in fields:
        cycles = _ranged_int(g.BREATHE, "cycles", fields["cycles"][1])
    elif "for" in fields:
        for_node = fields["for"][1]
        total = _duration(for_node, "'for'")
        cycles = math.floor(total / pattern.cycle_s + 1e-9)
        if cycles < 1:
            for_node.fail(
                f"'for' is shorter than one {pattern.cycle_s:g}s breath cycle",
                f"use at least {pattern.cycle_s:g}s",
            )
    else:
        node.fail("breathe needs 'cycles' or 'for'", "like cycles: 6 or for: 3m")
    return Breathe(pattern, cycles, cues)


def _bell(node: Node, p: _Problems) -> Bell:
    if node.is_scalar:
        return Bell(_choice(node, "bell", BELLS))
    fields = _fields(node, g.names(g.BELL), "bell", p)
    if "name" not in fields:
        node.fail("bell needs a 'name'", "expected one of: " + ", ".join(BELLS))
    name = _choice(fields["name"][1], "bell", BELLS)
    strikes = int(g.default(g.BELL, "strikes"))
    if "strikes" in fields:
        strikes = _ranged_int(g.BELL, "strikes", fields["strikes"][1])
    return Bell(name, strikes)


def _step(node: Node, base: Path, variables: Mapping[str, str], p: _Problems) -> StepKind:
    if node.is_scalar and str(node.raw.value) in _STEP_KINDS:
        node.fail(f"step '{node.raw.value}' needs a value", f"like '{node.raw.value}: ...'")
    if not node.is_mapping:
        node.fail(f"expected a step like 'say: ...', found {node.describe()}")
    entries = list(node.items())
    if len(entries) != 1:
        names = ", ".join(f"'{name}'" for name, _, _ in entries) or "nothing"
        node.fail(f"a step has exactly one kind, found {names}", "start a new '- ' item for each")
    kind, key, value = entries[0]
    if kind == "say":
        return _spoken(value, variables, "text to say")
    if kind == "pause":
        return Pause(_duration(value, "pause"))
    if kind == "breathe":
        return _breathe(value, p)
    if kind == "bell":
        return _bell(value, p)
    if kind == "sound":
        return Sound(_audio_file(value, base, "sound"))
    if kind == "reflect":
        fields = _fields(value, g.names(g.REFLECT), "reflect", p)
        if "question" not in fields:
            value.fail("reflect needs a 'question'")
        question = _spoken(fields["question"][1], variables, "question")
        silence = float(g.default(g.REFLECT, "silence"))
        if "silence" in fields:
            silence = _duration(fields["silence"][1], "silence")
        return Reflect(question, silence)
    key.fail(f"unknown step kind '{kind}'", suggest(kind, _STEP_KINDS))


def _section(
    node: Node,
    base: Path,
    variables: Mapping[str, str],
    voice: VoiceSpec,
    music: Music | None,
    pronounce: Pronounce,
    p: _Problems,
    catalog: Catalog,
) -> Section | None:
    fields = _fields(node, g.names(g.SECTION), "a section", p)
    title = ""
    if "title" in fields:
        title = p.get(lambda: _plain(fields["title"][1], variables, "section title"), "")
    else:
        p.items.append(_missing(node, "a section needs a 'title'"))
    if "voice" in fields:
        voice = p.get(lambda: _voice(fields["voice"][1], base, voice, p, catalog), voice)
    if "music" in fields:
        music = p.get(lambda: _music(fields["music"][1], base, p), music)
    if "pronounce" in fields:
        pronounce = p.get(
            lambda: _pronounce(fields["pronounce"][1], pronounce, voice, p, catalog), pronounce
        )
    steps: list[Step] = []
    missing = ("a section needs 'steps'", "a list like '- say: ...'")
    for step_node in _required_list(
        node, fields, "steps", missing, "a section needs at least one step", p
    ):
        kind = p.get(lambda n=step_node: _step(n, base, variables, p), None)  # type: ignore[misc]
        if kind is not None:
            loc = step_node.location
            steps.append(Step(kind, loc.line, loc.column))
    return Section(title, voice, music, tuple(steps), pronounce)


def _required_list(
    owner: Node,
    fields: dict[str, tuple[Node, Node]],
    key: str,
    missing: tuple[str, str],
    empty: str,
    p: _Problems,
) -> list[Node]:
    """The elements of a required, non-empty list; problems are recorded, not raised."""
    if key not in fields:
        p.items.append(_missing(owner, *missing))
        return []
    value = fields[key][1]
    elements: list[Node] = p.get(value.elements, [])
    if not elements and value.is_sequence:
        p.items.append(_missing(value, empty))
    return elements


def _missing(node: Node, message: str, hint: str | None = None) -> Problem:
    return Problem(node.location, node.path, message, hint)


COVER_MAX_BYTES = 5 * 1024 * 1024
_IMAGE_MAGIC = {
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
}


def _cover_file(node: Node, base: Path) -> Path:
    raw = node.text("cover path")
    with _file_errors(node, "cover", raw):
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


def _variables(node: Node, overrides: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, key, value in node.items():
        if not _NAME.match(name):
            key.fail(f"'{name}' is not a valid variable name", "use letters, digits and _")
        if not value.is_scalar or value.tag in (NULL, BOOL):
            value.fail(f"expected text for variable '{name}', found {value.describe()}")
        values[name] = str(value.raw.value)
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        names = ", ".join(sorted(values)) or "none"
        raise UsageError(
            f"--var {unknown[0]}: the script has no variable '{unknown[0]}' (it defines: {names})"
        )
    values.update(overrides)
    return values


def load_script(
    path: Path, overrides: Mapping[str, str] | None = None, catalog: Catalog | None = None
) -> Script:
    """Read and validate one script; raises ScriptError listing every problem."""
    try:
        return _load_script(path, overrides, catalog)
    except Invalid as exc:  # a problem met outside any collecting step (say, an odd key)
        raise ScriptError([exc.problem]) from None


def _load_script(
    path: Path, overrides: Mapping[str, str] | None, catalog: Catalog | None
) -> Script:
    overrides = dict(overrides or {})
    catalog = catalog or NoCatalog()
    root = load(path)
    if isinstance(root, list):
        raise ScriptError(root)
    p = _Problems()
    base = path.resolve().parent
    if not root.is_mapping:
        raise ScriptError(
            [
                _missing(
                    root,
                    f"expected a mapping of keys, found {root.describe()}",
                    "a script starts with 'title:' and 'sections:'",
                )
            ]
        )
    fields = _fields(root, g.names(g.SCRIPT), "the script", p)
    variables: dict[str, str] = dict(overrides)
    if "variables" in fields:
        variables = p.get(lambda: _variables(fields["variables"][1], overrides), variables)
    elif overrides:
        raise UsageError(f"--var {next(iter(overrides))}: the script defines no variables")
    title = ""
    if "title" in fields:
        title = p.get(lambda: _plain(fields["title"][1], variables, "title"), "")
    else:
        p.items.append(_missing(root, "the script needs a 'title'"))
    description = author = album = None
    if "description" in fields:
        description = p.get(lambda: fields["description"][1].text("description"), None)
    if "author" in fields:
        author = p.get(lambda: fields["author"][1].text("author"), None)
    if "album" in fields:
        album = p.get(lambda: fields["album"][1].text("album"), None)
    cover = None
    if "cover" in fields:
        cover = p.get(lambda: _cover_file(fields["cover"][1], base), None)
    voice = VoiceSpec()
    if "voice" in fields:
        voice = p.get(lambda: _voice(fields["voice"][1], base, VoiceSpec(), p, catalog), voice)
    music = None
    if "music" in fields:
        music = p.get(lambda: _music(fields["music"][1], base, p), None)
    pronounce: Pronounce = ()
    if "pronounce" in fields:
        pronounce = p.get(lambda: _pronounce(fields["pronounce"][1], (), voice, p, catalog), ())
    sections: list[Section] = []
    missing = ("the script needs 'sections'", "a list of sections")
    for node in _required_list(
        root, fields, "sections", missing, "'sections' needs at least one section", p
    ):
        section = p.get(
            lambda n=node: _section(n, base, variables, voice, music, pronounce, p, catalog),  # type: ignore[misc]
            None,
        )
        if section is not None:
            sections.append(section)
    if p.items:
        raise ScriptError(sorted(p.items, key=_order))
    return Script(
        path=path,
        title=title,
        sections=tuple(sections),
        description=description,
        author=author,
        album=album,
        cover=cover,
        variables=variables,
        voice=voice,
        music=music,
        pronounce=pronounce,
    )


def _order(problem: Problem) -> tuple[int, int]:
    loc = problem.location
    return (loc.line, loc.column) if loc else (0, 0)


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--var name=value` options as a mapping."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _NAME.match(name.strip()):
            raise UsageError(f"--var {pair!r}: expected name=value, like --var client=Sam")
        values[name.strip()] = value
    return values


LINE_SOURCE = "<text>"


def line_script(
    text: str, base: Script | None = None, voice_spec: VoiceSpec | None = None
) -> Script:
    """A one-step script that says `text` (inline pauses and {variables} as in a script),
    in `base`'s voice, variables and pronunciations, or in `voice_spec`."""
    raw = yaml.compose(json.dumps(text))  # a JSON string is a YAML scalar: columns match
    assert raw is not None
    node = Node(raw, LINE_SOURCE)
    variables = dict(base.variables) if base else {}
    try:
        said = _spoken(node, variables)
    except Invalid as exc:
        raise ScriptError([exc.problem]) from None
    spec = voice_spec or (base.voice if base else VoiceSpec())
    pronounce = base.pronounce if base else ()
    section = Section("say", spec, None, (Step(said, 1, 1),), pronounce)
    return Script(Path(LINE_SOURCE), said.text, (section,), voice=spec, pronounce=pronounce)
