"""The library's front door: one call per command, composing the pipeline's stages
script → plan → speech → mix → export / play. The CLI only parses options and prints.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from guided_audio.dsp.decode import file_length
from guided_audio.dsp.effects import RATE, seconds_to_samples
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.export import transcript
from guided_audio.export.naming import default_output
from guided_audio.export.tags import chapters_json, metadata
from guided_audio.export.write import check_output, write_file, write_text
from guided_audio.mix.gain import MEASURE_FORMAT, loudness_gain, prepare_beds
from guided_audio.mix.master import Master, predicted_gain
from guided_audio.mix.mixer import Mixer, Windowed, fingerprint
from guided_audio.plan import builder
from guided_audio.plan import pace as plan_pace
from guided_audio.plan.builder import build, cue_phrases, estimate_speech
from guided_audio.plan.length import at_length
from guided_audio.plan.pace import StepPace, step_paces
from guided_audio.plan.timeline import Measure, Timeline, clock
from guided_audio.play.devices import DEFAULT_BACKEND, open_output
from guided_audio.play.feed import LiveFeed, cached_lengths
from guided_audio.play.home import JournalEntry, Positions, journal_file
from guided_audio.play.player import PREFILL, At, AtSection, Player, section_target
from guided_audio.resources import Resources
from guided_audio.script import authoring
from guided_audio.script.loader import load_script
from guided_audio.script.model import Bilateral, Phrase, Reflect, Script
from guided_audio.speech import registry
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.registry import CATALOG
from guided_audio.speech.speaker import Speaker
from guided_audio.speech.workers import speaking

DEFAULT_LOUDNESS_LUFS = -16.0


def load_with_voices(path: Path, variables: Mapping[str, str] | None = None) -> Script:
    """Stage 1, with the voice stage's catalog to check voice names and phonemes."""
    return load_script(path, variables, CATALOG)


class Reporter(Protocol):
    """How the library tells a person what it is doing (the CLI draws bars; tests stay quiet)."""

    def info(self, message: str) -> None: ...

    def progress(
        self, label: str, total: int, detail: Callable[[], str] | None = None
    ) -> AbstractContextManager[Callable[[int], None]]:
        """A bar over `total` steps (`detail`: a line of its own shown beside it, such as a
        batch's audio minutes done)."""
        ...


class Silent:
    def info(self, message: str) -> None:
        pass

    def progress(
        self, label: str, total: int, detail: Callable[[], str] | None = None
    ) -> AbstractContextManager[Callable[[int], None]]:
        return nullcontext(lambda _: None)


@dataclass(frozen=True)
class Options:
    variables: Mapping[str, str] = field(default_factory=dict)
    loudness_lufs: float | None = DEFAULT_LOUDNESS_LUFS  # None: the raw mix, no gain or limiter
    cache_dir: Path | None = None  # None: SpeechCache.default()
    resources: Resources = field(default_factory=Resources.from_environment)
    length_s: float | None = None  # --length: the session fitted to it (None: natural)

    def speech_cache(self) -> SpeechCache:
        """The speech cache these options name (`cache_dir`, else the default one)."""
        return SpeechCache(self.cache_dir) if self.cache_dir else SpeechCache.default()


@dataclass(frozen=True)
class Rendered:
    script: Script
    timeline: Timeline
    source: Windowed
    loudness_lufs: float | None  # the target the source meets (None: raw mix)
    gain_db: float


def open_speaker(options: Options, reporter: Reporter) -> Speaker:
    cache = options.speech_cache()
    cache.ensure_writable()
    return Speaker(cache, notify=reporter.info, resources=options.resources)


@contextmanager
def synthesizing(speaker: Speaker, phrases: list[Phrase], reporter: Reporter) -> Iterator[bool]:
    """Render what the cache lacks, on every core (one engine session per worker); the body
    of the `with` runs meanwhile, told whether there is speech to wait for."""
    missing = speaker.missing(phrases)
    if not missing:
        yield False
        return
    with (
        reporter.progress("Synthesising speech", len(missing)) as advance,
        speaking(speaker, missing, advance),
    ):
        yield True


def synthesize(speaker: Speaker, phrases: list[Phrase], reporter: Reporter) -> None:
    """Render what the cache lacks, on every core."""
    with synthesizing(speaker, phrases, reporter):
        pass


def timeline(path: Path, options: Options, reporter: Reporter, estimate: bool = False) -> Timeline:
    """The accurate timeline (rendering uncached speech), or an instant estimate."""
    script = load_with_voices(path, options.variables)
    if estimate:
        return fitted(script, estimate_speech, options)
    speaker = open_speaker(options, reporter)
    synthesize(speaker, builder.phrases(script), reporter)
    return fitted(script, speaker.length, options)


def fitted(script: Script, measure: Measure, options: Options) -> Timeline:
    return at_length(script, measure, file_length, options.length_s)


def reach(path: Path, options: Options, reporter: Reporter) -> tuple[float, float]:
    """The shortest and the longest a --length can make the session, in seconds (uncached
    speech is rendered first)."""
    script = load_with_voices(path, options.variables)
    speaker = open_speaker(options, reporter)
    synthesize(speaker, builder.phrases(script), reporter)
    shortest, longest = builder.reach(script, speaker.length, file_length)
    return shortest / RATE, longest / RATE


@dataclass(frozen=True)
class Paces:
    steps: list[StepPace]
    narration_wpm: float | None


def paces(path: Path, timeline: Timeline, options: Options) -> Paces:
    """Each spoken step's words a minute, and the narration's, for `plan --words`."""
    script = load_with_voices(path, options.variables)
    steps = step_paces(script, timeline)
    return Paces(steps, plan_pace.narration_wpm(script, steps))


def validate(path: Path, options: Options, reporter: Reporter) -> Script:
    """Everything `export` would check before rendering; raises ScriptError."""
    script = load_with_voices(path, options.variables)
    _check_timing(script, options, reporter)
    return script


def _check_timing(script: Script, options: Options, reporter: Reporter) -> None:
    # Whether a spoken cue fits its phase is a real measurement: the (tiny, cached) cue
    # words are rendered; other speech is estimated. Online engines are never called here.
    cues = {p for p in cue_phrases(script) if not registry.engine(p.voice.engine).online}
    measure = estimate_speech
    with contextlib.ExitStack() as stack:
        if cues:
            try:
                speaker = open_speaker(options, reporter)
            except GuidedAudioError:
                # Checking answers valid or not (0 or 2) even where the cache cannot be
                # written: the cues are measured in a throwaway one.
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="guided-audio-"))
                speaker = Speaker(
                    SpeechCache(Path(folder)), notify=reporter.info, resources=options.resources
                )
            synthesize(speaker, list(cues), reporter)

            def measure(phrase: Phrase) -> int:
                return speaker.length(phrase) if phrase in cues else estimate_speech(phrase)

        build(script, measure, file_length)


def render(path: Path, options: Options, reporter: Reporter) -> Rendered:
    return render_script(load_with_voices(path, options.variables), options, reporter)


def render_script(script: Script, options: Options, reporter: Reporter) -> Rendered:
    speaker = open_speaker(options, reporter)
    beds = [section.music.bed for section in script.sections if section.music is not None]
    with synthesizing(speaker, builder.phrases(script), reporter) as waiting:
        if waiting:  # the beds' loops are measured while the workers speak
            prepare_beds(beds)
    tl = fitted(script, speaker.length, options)
    mixer = Mixer(tl, speaker)
    target = options.loudness_lufs
    if target is None:
        return Rendered(script, tl, mixer, None, 0.0)
    key = _loudness_key(tl, speaker, target)
    gain_db = speaker.cache.measurement(key)
    if gain_db is None:
        with reporter.progress("Measuring loudness", tl.total) as advance:
            gain_db = loudness_gain(mixer, target, advance)
        speaker.cache.remember(key, gain_db)
    return Rendered(script, tl, Master(mixer, gain_db), target, gain_db)


def _loudness_key(timeline: Timeline, speaker: Speaker, target_lufs: float) -> str:
    return f"{fingerprint(timeline, speaker.key)}-{target_lufs:g}-m{MEASURE_FORMAT}"


@dataclass(frozen=True)
class Report:
    """What a therapist is told about an export, measured on the written file."""

    path: Path
    seconds: float
    chapters: int
    loudness_lufs: float
    true_peak_dbtp: float

    def line(self) -> str:
        return (
            f"{self.path}  {clock(round(self.seconds * RATE))}  {self.chapters} chapter"
            f"{'' if self.chapters == 1 else 's'}  "
            f"{self.loudness_lufs:.1f} LUFS  {self.true_peak_dbtp:.1f} dBTP"
        )


def sidecars(out: Path) -> tuple[Path, Path]:
    """The transcript and the JSON chapters written beside an export."""
    return out.with_name(f"{out.stem}.vtt"), out.with_name(f"{out.stem}.chapters.json")


def export(
    path: Path,
    out: Path | None,
    options: Options,
    reporter: Reporter,
    force: bool = False,
    with_transcript: bool = True,
) -> tuple[Path, Rendered, Report]:
    out = out or default_output(path, variables=options.variables, length_s=options.length_s)
    script = load_with_voices(path, options.variables)  # bad input first: nothing is touched
    check_output(out, force)
    rendered = render_script(script, options, reporter)
    vtt, chapters = sidecars(out)
    with reporter.progress(f"Writing {out}", rendered.timeline.total) as advance:
        seconds, lufs, dbtp = write_file(
            out,
            rendered.source,
            metadata(script, rendered.timeline),
            advance,
            options.resources.encoders,
        )
    try:
        write_text(chapters, chapters_json(rendered.timeline))
        if with_transcript:
            speaker = open_speaker(options, reporter)
            write_text(vtt, transcript.webvtt(rendered.timeline, speaker.words))
    except BaseException:
        for written in (out, chapters):  # all of an export, or none of it
            written.unlink(missing_ok=True)
        raise
    return out, rendered, Report(out, seconds, len(rendered.timeline.sections), lufs, dbtp)


@dataclass(frozen=True)
class PlayOptions:
    backend: str = DEFAULT_BACKEND
    resume: bool = False
    from_section: str | None = None  # a number or a title
    journal: bool = False


class PlayerView(Protocol):
    """The screen and keys of `play` (a terminal, or plain lines when there is none)."""

    def run(self, player: Player) -> str:
        """Until the session ends or the listener leaves: 'finished' or 'quit'."""
        ...

    def ask(self, question: str) -> str | None:
        """An answer for the journal; None when no more can be asked."""
        ...


@dataclass(frozen=True)
class Played:
    script: Script
    outcome: str  # finished | quit | interrupted
    position: int
    journal: Path | None  # where answers went, if any were written


def play(
    path: Path,
    options: Options,
    reporter: Reporter,
    view: PlayerView,
    play_options: PlayOptions = PlayOptions(),
) -> Played:
    """Play through one device stream while speech not yet cached is synthesised ahead."""
    script = load_with_voices(path, options.variables)
    _check_timing(script, options, reporter)  # bad input is reported exactly as validate does
    titles = [section.title for section in script.sections]
    if any(isinstance(step.kind, Bilateral) for s in script.sections for step in s.steps):
        reporter.info("headphones, please: this session moves sound between your ears")
    speaker = open_speaker(replace(options, resources=options.resources.for_playing()), reporter)
    if options.length_s is not None:
        # A fitted session moves every silence as speech is measured: make it all first
        # (a length it cannot be is bad input, told before the device is looked for).
        synthesize(speaker, builder.phrases(script), reporter)
        titles = [span.title for span in fitted(script, speaker.length, options).sections]
    start: At | AtSection = At(0)
    positions = Positions(length_s=options.length_s)
    if play_options.from_section is not None:
        start = section_target(titles, play_options.from_section)
    elif play_options.resume:
        saved = positions.get(path)
        if positions.note:
            reporter.info(positions.note)
        if saved is None:
            reporter.info(f"no saved place for {path}; starting at the beginning")
        else:
            start = At(saved)
    output = open_output(play_options.backend)  # no device: say so before any work
    player = Player(live_feed(script, speaker, options), start)
    outcome = "interrupted"
    try:
        if not player.wait_ready(PREFILL, timeout_s=60.0) and player.error is None:
            raise GuidedAudioError("speech synthesis is too slow to start playing; try export")
        if player.error is not None:
            raise player.error
        output.start(player.pull, player.wait_ready)
        outcome = view.run(player)
        if player.error is not None:
            raise player.error
        if outcome == "finished":
            output.drain()
    finally:
        output.close()
        player.close()
        try:
            if outcome == "finished":
                positions.clear(path)
            else:
                positions.set(path, player.position)
        except GuidedAudioError as exc:  # never hide why playing stopped
            reporter.info(f"note: the place could not be saved: {exc}")
    written = _journal(script, path, view) if play_options.journal else None
    return Played(script, outcome, player.position, written)


def live_feed(script: Script, speaker: Speaker, options: Options) -> LiveFeed:
    """The gain is the measured one when the cache has it, else predicted from the levelled
    speech; the limiter is on either way (unless loudness is off)."""
    target = options.loudness_lufs
    length = None if options.length_s is None else seconds_to_samples(options.length_s)
    if target is None:
        return LiveFeed(script, speaker, lambda mixer: mixer, length=length)
    gain_db = None
    cached = cached_lengths(script, speaker)
    lengths, todo = cached
    if not todo:
        timeline = fitted(script, lengths.__getitem__, options)
        gain_db = speaker.cache.measurement(_loudness_key(timeline, speaker, target))
    gain = predicted_gain(target) if gain_db is None else gain_db
    return LiveFeed(script, speaker, lambda mixer: Master(mixer, gain), cached, length)


def _journal(script: Script, path: Path, view: PlayerView) -> Path | None:
    questions = [
        step.kind.question.text
        for section in script.sections
        for step in section.steps
        if isinstance(step.kind, Reflect)
    ]
    entry = JournalEntry(journal_file(path), script.title)
    for question in questions:
        answer = view.ask(question)
        if answer is None:
            break
        entry.add(question, answer)
    return entry.path if entry.written else None


def new_script(path: Path, title: str) -> Path:
    """A commented starter script that validates; refuses to overwrite."""
    if path.suffix not in (".yaml", ".yml"):
        path = path.with_name(f"{path.name}.yaml")
    if path.exists():
        raise UsageError(f"{path} already exists; choose another name (nothing was written)")
    schema = authoring.schema_path().as_uri()
    write_text(path, authoring.starter(title, schema), exclusive=True)
    return path


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


__all__ = ["clock"]  # re-exported for the CLI
