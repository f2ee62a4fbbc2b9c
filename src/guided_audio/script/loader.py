"""Stage 1: a script file read into the model (`model.Script`), every problem in it
collected and reported as FILE:LINE:COL through `ScriptError`. Nothing here renders audio
or touches the network.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Protocol

import yaml

from guided_audio.errors import Invalid, Problem, ScriptError, UsageError
from guided_audio.script import grammar as g
from guided_audio.script.bilateral import read_bilateral
from guided_audio.script.flex import read_bounds, read_cycle_range
from guided_audio.script.grammar import (
    AUDIO_SUFFIXES,
    BEDS,
    BELLS,
    NO_MUSIC,
)
from guided_audio.script.kinds import Context, read_keys, read_value
from guided_audio.script.model import (
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
from guided_audio.script.spoken import plain_text, read_variables, spoken_text
from guided_audio.script.values import (
    Problems,
    file_errors,
    missing_key,
    read_audio_file,
    read_fields,
    read_model_file,
    required_list,
)
from guided_audio.script.yamlnode import BOOL, NULL, Node, load, suggest

# --- sections and steps ----------------------------------------------------------------------
_STEP_KINDS = g.names(g.STEPS)
_PACE = g.key(g.VOICE, "pace")
_ENGINE = g.key(g.VOICE, "engine")
_READ_AS_THEY_ARE = ("pace", "gap", "sentence_pause", "clause_pause")  # no other key's sway

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


def _voice(
    node: Node, context: Context, inherited: VoiceSpec, p: Problems, catalog: Catalog
) -> VoiceSpec:
    base = context.base
    fields = read_fields(node, g.names(g.VOICE), "voice", p)
    spec = inherited
    if "engine" in fields:
        engine = p.get(lambda: read_value(_ENGINE, fields["engine"][1], context), None)
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
            with file_errors(model_node, "voice model", raw):
                spec = replace(spec, model=read_model_file(model_node, base, raw), name=None)
    return replace(spec, **read_keys(g.VOICE, fields, context, p, _READ_AS_THEY_ARE))


PHONEME_HINT = "Piper phonemes (espeak IPA) look like [[ ɹˈeɪz ]]; a space parts words"
_PRONOUNCE_WORD = re.compile(r"^[\w][\w'.\u2019-]*$")
_PHONEMES = re.compile(r"^\[\[(.*)\]\]$", re.DOTALL)


def _pronounce(
    node: Node, inherited: Pronounce, spec: VoiceSpec, p: Problems, catalog: Catalog
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


def _music(node: Node, context: Context, p: Problems) -> Music | None:
    if node.is_scalar and (node.tag in (NULL, BOOL) or str(node.raw.value) in NO_MUSIC):
        if node.tag == BOOL and str(node.raw.value).lower() == "true":
            node.fail("expected a music bed, found 'true'", "write music: {bed: drone}")
        return None
    if node.is_scalar:
        node.fail(
            f"expected a music bed like {{bed: drone}}, or none, found {node.describe()}",
            "write music: none for no bed",
        )
    fields = read_fields(node, g.names(g.MUSIC), "music", p)
    if "bed" not in fields:
        node.fail("music needs a 'bed'", "a built-in bed (drone, noise) or an audio file")
    bed_node = fields["bed"][1]
    bed: str | Path = "drone"
    with p.collect():
        name = bed_node.text("bed")
        if name in BEDS:
            bed = name
        elif Path(name).suffix.lower() in AUDIO_SUFFIXES or "/" in name:
            bed = read_audio_file(bed_node, context.base, "music bed")
        else:
            bed_node.fail(f"unknown music bed '{name}'", suggest(name, BEDS) + " or an audio file")
    return Music(bed, **read_keys(g.MUSIC, fields, context, p, ("level", "duck", "fade")))


def _pattern(node: Node, context: Context, p: Problems) -> BreathPattern:
    if node.is_scalar:
        name = node.text("breath pattern")
        if name not in BREATH_PATTERNS:
            node.fail(
                f"unknown breath pattern '{name}'",
                suggest(name, (*BREATH_PATTERNS, "{in: 4, hold: 7, out: 8, rest: 0}")),
            )
        return BREATH_PATTERNS[name]
    fields = read_fields(node, g.names(g.PATTERN), "a breath pattern", p)
    phases = []
    for phase in g.PATTERN:
        kind = phase.name
        if kind not in fields:
            if phase.required:
                node.fail(f"a custom breath pattern needs '{kind}'", "like {in: 4, out: 6}")
            continue
        seconds = read_value(phase, fields[kind][1], context)
        if seconds > 0:
            phases.append(Phase(kind, seconds))
    return BreathPattern("custom", tuple(phases))


def _breathe(node: Node, context: Context, p: Problems) -> Breathe:
    fields = read_fields(node, g.names(g.BREATHE), "breathe", p)
    if "pattern" not in fields:
        node.fail("breathe needs a 'pattern'", suggest("", tuple(BREATH_PATTERNS)))
    pattern = _pattern(fields["pattern"][1], context, p)
    cues = str(g.default(g.BREATHE, "cues"))
    cues = read_keys(g.BREATHE, fields, context, p, ("cues",)).get("cues", cues)
    if "cycles" in fields and "for" in fields:
        fields["for"][0].fail("give either 'cycles' or 'for', not both")
    if "cycles" in fields:
        cycles = read_value(g.key(g.BREATHE, "cycles"), fields["cycles"][1], context)
    elif "for" in fields:
        for_node = fields["for"][1]
        total = read_value(g.key(g.BREATHE, "for"), for_node, context)
        cycles = math.floor(total / pattern.cycle_s + 1e-9)
        if cycles < 1:
            for_node.fail(
                f"'for' is shorter than one {pattern.cycle_s:g}s breath cycle",
                f"use at least {pattern.cycle_s:g}s",
            )
    else:
        node.fail("breathe needs 'cycles' or 'for'", "like cycles: 6 or for: 3m")
    return Breathe(pattern, cycles, cues, read_cycle_range(fields, cycles, context))


def _bell(node: Node, context: Context, p: Problems) -> Bell:
    if node.is_scalar:
        return Bell(read_value(g.key(g.STEPS, "bell"), node, context))
    fields = read_fields(node, g.names(g.BELL), "bell", p)
    if "name" not in fields:
        node.fail("bell needs a 'name'", "expected one of: " + ", ".join(BELLS))
    name = read_value(g.key(g.BELL, "name"), fields["name"][1], context)
    strikes = int(g.default(g.BELL, "strikes"))
    if "strikes" in fields:
        strikes = read_value(g.key(g.BELL, "strikes"), fields["strikes"][1], context)
    return Bell(name, strikes)


def _step(node: Node, context: Context, p: Problems) -> StepKind:
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
        said: Say = read_value(g.key(g.STEPS, "say"), value, context)
        return said
    if kind == "pause":
        if not value.is_mapping:
            return Pause(read_value(g.key(g.STEPS, "pause"), value, context))
        fields = read_fields(value, g.names(g.PAUSE), "pause", p)
        if "for" not in fields:
            value.fail("pause needs 'for'", "like pause: {for: 30s, min: 10s, max: 2m}")
        seconds = read_value(g.key(g.PAUSE, "for"), fields["for"][1], context)
        return Pause(seconds, read_bounds(g.PAUSE, fields, seconds, "the pause", context))
    if kind == "breathe":
        return _breathe(value, context, p)
    if kind == "bell":
        return _bell(value, context, p)
    if kind == "sound":
        return Sound(read_value(g.key(g.STEPS, "sound"), value, context))
    if kind == "bilateral":
        return read_bilateral(value, context, p)
    if kind == "reflect":
        fields = read_fields(value, g.names(g.REFLECT), "reflect", p)
        if "question" not in fields:
            value.fail("reflect needs a 'question'")
        question = read_value(g.key(g.REFLECT, "question"), fields["question"][1], context)
        silence = float(g.default(g.REFLECT, "silence"))
        if "silence" in fields:
            silence = read_value(g.key(g.REFLECT, "silence"), fields["silence"][1], context)
        return Reflect(
            question, silence, read_bounds(g.REFLECT, fields, silence, "the silence", context)
        )
    key.fail(f"unknown step kind '{kind}'", suggest(kind, _STEP_KINDS))


def _section(
    node: Node,
    context: Context,
    voice: VoiceSpec,
    music: Music | None,
    pronounce: Pronounce,
    p: Problems,
    catalog: Catalog,
) -> Section | None:
    fields = read_fields(node, g.names(g.SECTION), "a section", p)
    title = ""
    if "title" in fields:
        title = p.get(
            lambda: plain_text(fields["title"][1], context.variables, "section title"), ""
        )
    else:
        p.items.append(missing_key(node, "a section needs a 'title'"))
    if "voice" in fields:
        voice = p.get(lambda: _voice(fields["voice"][1], context, voice, p, catalog), voice)
    if "music" in fields:
        music = p.get(lambda: _music(fields["music"][1], context, p), music)
    if "pronounce" in fields:
        pronounce = p.get(
            lambda: _pronounce(fields["pronounce"][1], pronounce, voice, p, catalog), pronounce
        )
    steps: list[Step] = []
    missing = ("a section needs 'steps'", "a list like '- say: ...'")
    for step_node in required_list(
        node, fields, "steps", missing, "a section needs at least one step", p
    ):
        kind = p.get(lambda n=step_node: _step(n, context, p), None)  # type: ignore[misc]
        if kind is not None:
            loc = step_node.location
            steps.append(Step(kind, loc.line, loc.column))
    extra = read_keys(g.SECTION, fields, context, p, ("optional", "priority"))
    return Section(title, voice, music, tuple(steps), pronounce, **extra)


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
    p = Problems()
    base = path.resolve().parent
    if not root.is_mapping:
        raise ScriptError(
            [
                missing_key(
                    root,
                    f"expected a mapping of keys, found {root.describe()}",
                    "a script starts with 'title:' and 'sections:'",
                )
            ]
        )
    fields = read_fields(root, g.names(g.SCRIPT), "the script", p)
    variables: dict[str, str] = dict(overrides)
    if "variables" in fields:
        variables = p.get(lambda: read_variables(fields["variables"][1], overrides), variables)
    elif overrides:
        raise UsageError(f"--var {next(iter(overrides))}: the script defines no variables")
    title = ""
    if "title" in fields:
        title = p.get(lambda: plain_text(fields["title"][1], variables, "title"), "")
    else:
        p.items.append(missing_key(root, "the script needs a 'title'"))
    context = Context(base, variables)
    tags = read_keys(g.SCRIPT, fields, context, p, ("description", "author", "album", "cover"))
    voice = VoiceSpec()
    if "voice" in fields:
        voice = p.get(lambda: _voice(fields["voice"][1], context, VoiceSpec(), p, catalog), voice)
    music = None
    if "music" in fields:
        music = p.get(lambda: _music(fields["music"][1], context, p), None)
    pronounce: Pronounce = ()
    if "pronounce" in fields:
        pronounce = p.get(lambda: _pronounce(fields["pronounce"][1], (), voice, p, catalog), ())
    sections: list[Section] = []
    missing = ("the script needs 'sections'", "a list of sections")
    for node in required_list(
        root, fields, "sections", missing, "'sections' needs at least one section", p
    ):
        section = p.get(
            lambda n=node: _section(n, context, voice, music, pronounce, p, catalog),  # type: ignore[misc]
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
        **tags,
        variables=variables,
        voice=voice,
        music=music,
        pronounce=pronounce,
    )


def _order(problem: Problem) -> tuple[int, int]:
    loc = problem.location
    return (loc.line, loc.column) if loc else (0, 0)


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
        said = spoken_text(node, variables)
    except Invalid as exc:
        raise ScriptError([exc.problem]) from None
    spec = voice_spec or (base.voice if base else VoiceSpec())
    pronounce = base.pronounce if base else ()
    section = Section("say", spec, None, (Step(said, 1, 1),), pronounce)
    return Script(Path(LINE_SOURCE), said.text, (section,), voice=spec, pronounce=pronounce)
