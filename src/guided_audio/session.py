"""The library's front door: one call per command, composing the pipeline stages
script → plan → voice → mix → sinks. The CLI only parses options and prints.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from guided_audio import mix, plan, sinks, sounds, voice
from guided_audio.effects import RATE
from guided_audio.errors import GuidedAudioError
from guided_audio.plan import Timeline
from guided_audio.script import Script, load_script
from guided_audio.voice import Phrase, Speaker, SpeechCache

DEFAULT_LOUDNESS_LUFS = -16.0


class Reporter(Protocol):
    """How the library tells a person what it is doing (the CLI draws bars; tests stay quiet)."""

    def info(self, message: str) -> None: ...

    def progress(self, label: str, total: int) -> AbstractContextManager[Callable[[int], None]]: ...


class Silent:
    def info(self, message: str) -> None:
        pass

    def progress(self, label: str, total: int) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda _: None)


@dataclass(frozen=True)
class Options:
    variables: Mapping[str, str] = field(default_factory=dict)
    loudness_lufs: float | None = DEFAULT_LOUDNESS_LUFS  # None: the raw mix, no gain or limiter
    cache_dir: Path | None = None  # None: $GUIDED_AUDIO_CACHE or ./audio_cache


@dataclass(frozen=True)
class Rendered:
    script: Script
    timeline: Timeline
    source: mix.Windowed
    loudness_lufs: float | None  # the target the source meets (None: raw mix)
    gain_db: float


def _speaker(options: Options, reporter: Reporter) -> Speaker:
    cache = SpeechCache(options.cache_dir) if options.cache_dir else SpeechCache.default()
    cache.ensure_writable()
    return Speaker(cache, notify=reporter.info)


def synthesize(speaker: Speaker, phrases: list[Phrase], reporter: Reporter) -> None:
    missing = speaker.missing(phrases)
    if missing:
        with reporter.progress("Synthesising speech", len(missing)) as advance:
            for phrase in missing:
                speaker.render(phrase)
                advance(1)


def timeline(path: Path, options: Options, reporter: Reporter, estimate: bool = False) -> Timeline:
    """The accurate timeline (rendering uncached speech), or an instant estimate."""
    script = load_script(path, options.variables)
    if estimate:
        return plan.build(script, plan.estimate_speech, mix.file_length)
    speaker = _speaker(options, reporter)
    synthesize(speaker, plan.phrases(script), reporter)
    return plan.build(script, speaker.length, mix.file_length)


def validate(path: Path, options: Options, reporter: Reporter) -> Script:
    """Everything `export` would check before rendering; raises ScriptError."""
    script = load_script(path, options.variables)
    # Whether a spoken cue fits its phase is a real measurement: the (tiny, cached) cue
    # words are rendered; other speech is estimated. Online engines are never called here.
    cues = {p for p in plan.cue_phrases(script) if not voice.engine(p.voice.engine).online}
    measure = plan.estimate_speech
    if cues:
        speaker = _speaker(options, reporter)
        synthesize(speaker, list(cues), reporter)

        def measure(phrase: Phrase) -> int:
            return speaker.length(phrase) if phrase in cues else plan.estimate_speech(phrase)

    plan.build(script, measure, mix.file_length)
    return script


def render(path: Path, options: Options, reporter: Reporter) -> Rendered:
    return _render(load_script(path, options.variables), options, reporter)


def _render(script: Script, options: Options, reporter: Reporter) -> Rendered:
    speaker = _speaker(options, reporter)
    synthesize(speaker, plan.phrases(script), reporter)
    tl = plan.build(script, speaker.length, mix.file_length)
    mixer = mix.Mixer(tl, speaker)
    target = options.loudness_lufs
    if target is None:
        return Rendered(script, tl, mixer, None, 0.0)
    key = f"{mix.fingerprint(tl, speaker.key)}-{target:g}"
    gain_db = speaker.cache.measurement(key)
    if gain_db is None:
        passes = tl.total * mix.MAX_LOUDNESS_PASSES
        with reporter.progress("Measuring loudness", passes) as advance:
            gain_db = mix.loudness_gain(mixer, target, advance)
            advance(passes)
        speaker.cache.remember(key, gain_db)
    return Rendered(script, tl, mix.Master(mixer, gain_db), target, gain_db)


def default_output(path: Path) -> Path:
    return Path("sessions") / f"{path.stem}.mp3"


def export(
    path: Path, out: Path | None, options: Options, reporter: Reporter, force: bool = False
) -> tuple[Path, Rendered]:
    out = out or default_output(path)
    script = load_script(path, options.variables)  # bad input first: nothing is touched
    sinks.check_output(out, force)
    rendered = _render(script, options, reporter)
    tags = {"title": rendered.script.title, "album": "guided-audio"}
    if rendered.script.author:
        tags["artist"] = rendered.script.author
    with reporter.progress(f"Writing {out}", rendered.timeline.total) as advance:
        sinks.write_file(out, rendered.source, tags, advance)
    return out, rendered


def play(
    path: Path, options: Options, reporter: Reporter, position: Callable[[Timeline, int], None]
) -> Rendered:
    """Render (streaming) and play; `position` hears the timeline and the sample playing."""
    rendered = render(path, options, reporter)
    tl = rendered.timeline
    sinks.play(rendered.source, sinks.chunk_bounds(tl), lambda sample: position(tl, sample))
    return rendered


def preview_bell(name: str) -> None:
    """Play one strike of a built-in bell."""
    clip = sinks.Clip(sounds.bell(name))
    sinks.play(clip, [(0, clip.total)])


def clock(samples: int) -> str:
    seconds = int(samples // RATE)
    hours, rest = divmod(seconds, 3600)
    return (
        f"{hours}:{rest // 60:02d}:{rest % 60:02d}"
        if hours
        else f"{rest // 60:02d}:{rest % 60:02d}"
    )


def check_all(
    paths: list[Path], options: Options, reporter: Reporter
) -> Iterator[GuidedAudioError | None]:
    """validate() for each path: None when valid, else the error (so all files are checked)."""
    for path in paths:
        try:
            validate(path, options, reporter)
        except GuidedAudioError as exc:
            yield exc
        else:
            yield None
