"""The library's front door: one call per command, composing the pipeline stages
script → plan → voice → mix → sinks. The CLI only parses options and prints.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import multiprocessing
import os
import re
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

from guided_audio import authoring, mix, plan, sinks, sounds, transcript, voice
from guided_audio.effects import RATE
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.files import exit_quietly_on_signals
from guided_audio.home import JournalEntry, Positions, journal_file
from guided_audio.model import Reflect, Script
from guided_audio.plan import SectionSpan, Timeline, clock
from guided_audio.player import (
    PREFILL,
    At,
    AtSection,
    LiveFeed,
    Player,
    StaticFeed,
    cached_lengths,
    section_target,
)
from guided_audio.script import line_script, load_script
from guided_audio.voice import Phrase, Speaker, SpeechCache

DEFAULT_LOUDNESS_LUFS = -16.0


def _load(path: Path, variables: Mapping[str, str] | None = None) -> Script:
    """Stage 1, with the voice stage's catalog to check voice names and phonemes."""
    return load_script(path, variables, voice.CATALOG)


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
    if not multiprocessing.current_process().daemon:  # a batch's worker has its share
        voice.use_cores(worker_count())  # speech made here keeps to the cores asked for
    return Speaker(cache, notify=reporter.info)


def synthesize(
    speaker: Speaker,
    phrases: list[Phrase],
    reporter: Reporter,
    meanwhile: Callable[[], None] = lambda: None,
) -> None:
    """Render what the cache lacks, on every core (one engine session per worker); this
    process runs `meanwhile` while they speak."""
    missing = speaker.missing(phrases)
    if missing:
        with reporter.progress("Synthesising speech", len(missing)) as advance:
            speaker.render_many(missing, worker_count(), advance, meanwhile)


def worker_count() -> int:
    """Processes (and cores) to work with at once: GUIDED_AUDIO_JOBS, else one per core."""
    return int(os.environ.get("GUIDED_AUDIO_JOBS") or os.cpu_count() or 1)


_files_at_once = 1  # a batch's worker process shares the cores with the others


def _encoders() -> int:
    """Encoders one file may run at once: its share of the workers."""
    return max(1, worker_count() // _files_at_once)


def timeline(path: Path, options: Options, reporter: Reporter, estimate: bool = False) -> Timeline:
    """The accurate timeline (rendering uncached speech), or an instant estimate."""
    script = _load(path, options.variables)
    if estimate:
        return plan.build(script, plan.estimate_speech, mix.file_length)
    speaker = _speaker(options, reporter)
    synthesize(speaker, plan.phrases(script), reporter)
    return plan.build(script, speaker.length, mix.file_length)


@dataclass(frozen=True)
class Paces:
    steps: list[plan.StepPace]
    narration_wpm: float | None


def paces(path: Path, timeline: Timeline, options: Options) -> Paces:
    """Each spoken step's words a minute, and the narration's, for `plan --words`."""
    script = _load(path, options.variables)
    steps = plan.step_paces(script, timeline)
    return Paces(steps, plan.narration_wpm(script, steps))


def validate(path: Path, options: Options, reporter: Reporter) -> Script:
    """Everything `export` would check before rendering; raises ScriptError."""
    script = _load(path, options.variables)
    _check_timing(script, options, reporter)
    return script


def _check_timing(script: Script, options: Options, reporter: Reporter) -> None:
    # Whether a spoken cue fits its phase is a real measurement: the (tiny, cached) cue
    # words are rendered; other speech is estimated. Online engines are never called here.
    cues = {p for p in plan.cue_phrases(script) if not voice.engine(p.voice.engine).online}
    measure = plan.estimate_speech
    with contextlib.ExitStack() as stack:
        if cues:
            try:
                speaker = _speaker(options, reporter)
            except GuidedAudioError:
                # Checking answers valid or not (0 or 2) even where the cache cannot be
                # written: the cues are measured in a throwaway one.
                folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="guided-audio-"))
                speaker = Speaker(SpeechCache(Path(folder)), notify=reporter.info)
            synthesize(speaker, list(cues), reporter)

            def measure(phrase: Phrase) -> int:
                return speaker.length(phrase) if phrase in cues else plan.estimate_speech(phrase)

        plan.build(script, measure, mix.file_length)


def render(path: Path, options: Options, reporter: Reporter) -> Rendered:
    return _render(_load(path, options.variables), options, reporter)


def _render(script: Script, options: Options, reporter: Reporter) -> Rendered:
    speaker = _speaker(options, reporter)
    beds = [section.music.bed for section in script.sections if section.music is not None]
    synthesize(speaker, plan.phrases(script), reporter, lambda: mix.prepare_beds(beds))
    tl = plan.build(script, speaker.length, mix.file_length)
    mixer = mix.Mixer(tl, speaker)
    target = options.loudness_lufs
    if target is None:
        return Rendered(script, tl, mixer, None, 0.0)
    key = _loudness_key(tl, speaker, target)
    gain_db = speaker.cache.measurement(key)
    if gain_db is None:
        with reporter.progress("Measuring loudness", tl.total) as advance:
            gain_db = mix.loudness_gain(mixer, target, advance)
        speaker.cache.remember(key, gain_db)
    return Rendered(script, tl, mix.Master(mixer, gain_db), target, gain_db)


def _loudness_key(timeline: Timeline, speaker: Speaker, target_lufs: float) -> str:
    return f"{mix.fingerprint(timeline, speaker.key)}-{target_lufs:g}"


DEFAULT_FOLDER = Path("sessions")
_RESERVED_NAMES = {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)),
                   *(f"lpt{n}" for n in range(1, 10))}  # fmt: skip
MAX_NAME = 100


def safe_name(*parts: str) -> str:
    """A file name safe on every OS: lowercase letters, digits and dashes, not reserved."""
    words = [re.sub(r"[^a-z0-9]+", "-", part.casefold()).strip("-") for part in parts]
    name = "-".join(w for w in words if w)[:MAX_NAME].strip("-") or "session"
    return f"{name}-" if name in _RESERVED_NAMES else name


def default_output(
    path: Path,
    audio_format: str = "mp3",
    variables: Mapping[str, str] | None = None,
    folder: Path = DEFAULT_FOLDER,
) -> Path:
    """sessions/NAME.mp3; each --var value joins the name (box-breathing-sam.mp3)."""
    return folder / f"{safe_name(path.stem, *(variables or {}).values())}.{audio_format}"


def output_path(
    script: Path,
    out: Path | None,
    audio_format: str | None,
    variables: Mapping[str, str] | None = None,
) -> Path:
    """-o (a file, or a folder for the default name), or the default name; a UsageError
    when -o and --format disagree."""
    if out is None or out.is_dir():
        folder = DEFAULT_FOLDER if out is None else out
        return default_output(script, audio_format or "mp3", variables, folder)
    if audio_format and out.suffix.lower() != f".{audio_format}":
        raise UsageError(f"-o {out} is not a .{audio_format} file, as --format {audio_format} asks")
    return out


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


LIBRARY_NAME = "guided-audio"
GENRE = "Meditation"


def metadata(script: Script, timeline: Timeline) -> sinks.Metadata:
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
    chapters = tuple(sinks.Chapter(s.title, s.start, s.end) for s in timeline.sections)
    return sinks.Metadata(tags, chapters, script.cover)


def chapters_json(timeline: Timeline) -> str:
    """Podcasting 2.0 JSON chapters."""
    chapters = [
        {"startTime": round(s.start / RATE, 3), "title": s.title} for s in timeline.sections
    ]
    return json.dumps({"version": "1.2.0", "chapters": chapters}, indent=2, ensure_ascii=False)


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
    out = out or default_output(path, variables=options.variables)
    script = _load(path, options.variables)  # bad input first: nothing is touched
    sinks.check_output(out, force)
    rendered = _render(script, options, reporter)
    vtt, chapters = sidecars(out)
    with reporter.progress(f"Writing {out}", rendered.timeline.total) as advance:
        seconds, lufs, dbtp = sinks.write_file(
            out, rendered.source, metadata(script, rendered.timeline), advance, _encoders()
        )
    try:
        sinks.write_text(chapters, chapters_json(rendered.timeline))
        if with_transcript:
            speaker = _speaker(options, reporter)
            sinks.write_text(vtt, transcript.webvtt(rendered.timeline, speaker.words))
    except BaseException:
        for written in (out, chapters):  # all of an export, or none of it
            written.unlink(missing_ok=True)
        raise
    return out, rendered, Report(out, seconds, len(rendered.timeline.sections), lufs, dbtp)


def scripts_in(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for its .yaml scripts, sorted."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix in (".yaml", ".yml"))
        else:
            found.append(path)
    return found


@dataclass(frozen=True)
class Outcome:
    """One file of a batch: its report, or why it failed (and the exit code that means)."""

    script: Path
    report: Report | None
    error: str | None = None
    exit_code: int = 0


@dataclass(frozen=True)
class _Job:
    script: Path
    out: Path
    options: Options
    force: bool
    with_transcript: bool


def options_for(script: Path, options: Options) -> Options:
    """A batch's options for one of its scripts: the --var values it uses (the others are
    for other scripts, and ignored here)."""
    defined = _load(script).variables
    used = {k: v for k, v in options.variables.items() if k in defined}
    return Options(used, options.loudness_lufs, options.cache_dir)


def speak_all(scripts: list[Path], options: Options, reporter: Reporter) -> None:
    """Render the speech of every script at once, on every core: one pool of workers for
    the whole batch, so they stay busy across files and the voice loads once. Scripts that
    fail their checks are skipped, and a failure here is left to each script's own render,
    which reports it where it belongs."""
    wanted: list[Phrase] = []
    for path in scripts:
        try:
            wanted += plan.phrases(validate(path, options_for(path, options), Silent()))
        except GuidedAudioError:
            continue
    with contextlib.suppress(GuidedAudioError):
        synthesize(_speaker(options, reporter), wanted, reporter)


def plan_many(
    scripts: list[Path], options: Options, reporter: Reporter, estimate: bool = False
) -> Iterator[tuple[Path, Timeline | GuidedAudioError]]:
    """Each script's timeline, or why it has none; their speech is made first, all at once."""
    if not estimate:
        speak_all(scripts, options, reporter)
    for path in scripts:
        try:
            yield path, timeline(path, options_for(path, options), reporter, estimate)
        except GuidedAudioError as exc:
            yield path, exc


def _export_one(job: _Job) -> Outcome:
    script, options = job.script, job.options
    try:
        options = options_for(script, options)
        _, _, report = export(script, job.out, options, Silent(), job.force, job.with_transcript)
    except GuidedAudioError as exc:
        return Outcome(script, None, str(exc), exc.exit_code)
    return Outcome(script, report, None)


def _start_batch_worker(workers: int) -> None:
    global _files_at_once
    _files_at_once = workers
    exit_quietly_on_signals()
    voice.share_cores(workers)  # one inference thread each when there is a file per core


def export_many(
    scripts: list[Path],
    folder: Path,
    audio_format: str,
    options: Options,
    jobs: int | None = None,
    force: bool = False,
    with_transcript: bool = True,
) -> Iterator[Outcome]:
    """Export each script into `folder`, `jobs` at once (default: GUIDED_AUDIO_JOBS, else
    one per core), yielding each outcome as it finishes; a failing file does not stop the
    others. Call speak_all first: each file then only mixes and encodes (else each makes its
    own speech, on one core)."""
    work = [
        _Job(
            script,
            default_output(script, audio_format, options.variables, folder),
            options,
            force,
            with_transcript,
        )
        for script in scripts
    ]
    names = [job.out for job in work]
    if len(set(names)) != len(names):
        clash = next(n for n in names if names.count(n) > 1)
        raise UsageError(f"two scripts would both be exported to {clash}; export them apart")
    workers = max(1, min(jobs or worker_count(), len(work)))
    if workers == 1:
        yield from (_export_one(job) for job in work)
        return
    context = multiprocessing.get_context("fork")  # before any thread or engine is started
    # Ctrl-C reaches every worker (one process group) and the shutdown below sends SIGTERM:
    # either unwinds a worker's export (its temp file goes), and it exits quietly.
    pool = context.Pool(workers, initializer=_start_batch_worker, initargs=(workers,))
    try:
        yield from pool.imap_unordered(_export_one, work)
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM to every worker: each removes its temp file
        raise
    finally:
        pool.join()


@dataclass(frozen=True)
class PlayOptions:
    backend: str = sinks.DEFAULT_BACKEND
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
    script = _load(path, options.variables)
    _check_timing(script, options, reporter)  # bad input is reported exactly as validate does
    titles = [section.title for section in script.sections]
    start: At | AtSection = At(0)
    positions = Positions()
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
    output = sinks.open_output(play_options.backend)  # no device: say so before any work
    speaker = _speaker(options, reporter)
    sounds.keep_drone_tiles(sounds.DRONE_TILES_LIVE)  # it plays in real time: keep memory low
    player = Player(_live_feed(script, speaker, options.loudness_lufs), start)
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
        sounds.keep_drone_tiles(None)
        try:
            if outcome == "finished":
                positions.clear(path)
            else:
                positions.set(path, player.position)
        except GuidedAudioError as exc:  # never hide why playing stopped
            reporter.info(f"note: the place could not be saved: {exc}")
    written = _journal(script, path, view) if play_options.journal else None
    return Played(script, outcome, player.position, written)


def _live_feed(script: Script, speaker: Speaker, target: float | None) -> LiveFeed:
    """The gain is the measured one when the cache has it, else predicted from the levelled
    speech; the limiter is on either way (unless loudness is off)."""
    if target is None:
        return LiveFeed(script, speaker, lambda mixer: mixer)
    gain_db = None
    cached = cached_lengths(script, speaker)
    lengths, todo = cached
    if not todo:
        timeline = plan.build(script, lengths.__getitem__, mix.file_length)
        gain_db = speaker.cache.measurement(_loudness_key(timeline, speaker, target))
    gain = mix.predicted_gain(target) if gain_db is None else gain_db
    return LiveFeed(script, speaker, lambda mixer: mix.Master(mixer, gain), cached)


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


@dataclass(frozen=True)
class LineVoice:
    """`say`'s voice: a script's, changed by any of these that are given."""

    script: Path | None = None
    engine: str | None = None
    name: str | None = None
    pace: float | None = None


def say(
    line: str,
    line_voice: LineVoice,
    options: Options,
    reporter: Reporter,
    out: Path | None = None,
    backend: str = sinks.DEFAULT_BACKEND,
) -> Rendered:
    """Speak one line as a session would (normaliser, pauses, pace), to the speakers or `out`."""
    base = _load(line_voice.script, options.variables) if line_voice.script else None
    spec = base.voice if base else voice.VoiceSpec()
    if line_voice.engine and line_voice.engine != spec.engine:
        spec = replace(spec, engine=line_voice.engine, name=None, model=None)
    if line_voice.name:
        known = voice.names(spec.engine)
        if known is not None and line_voice.name not in known:
            raise UsageError(
                f"--voice {line_voice.name}: unknown {spec.engine} voice; "
                f"available: {', '.join(known)}"
            )
        spec = replace(spec, name=line_voice.name, model=None)
    if line_voice.pace is not None:
        spec = replace(spec, pace=line_voice.pace)
    script = line_script(line, base, spec)
    if out is not None:
        sinks.check_output(out, force=True)
    rendered = _render(script, options, reporter)
    if out is not None:
        sinks.write_file(out, rendered.source)
        return rendered
    _play_static(rendered.timeline, rendered.source, backend)
    return rendered


def _play_static(timeline: Timeline, source: mix.Windowed, backend: str) -> None:
    output = sinks.open_output(backend)
    player = Player(StaticFeed(timeline, source))
    try:
        player.wait_ready(PREFILL, timeout_s=10.0)
        output.start(player.pull, player.wait_ready)
        player.finished.wait()
        output.drain()
    finally:
        output.close()
        player.close()
        sounds.keep_drone_tiles(None)


def preview_bell(name: str, backend: str = sinks.DEFAULT_BACKEND) -> None:
    """Play one strike of a built-in bell."""
    clip = sinks.Clip(sounds.bell(name))
    timeline = Timeline(name, (), (SectionSpan(name, 0, clip.total),), (), clip.total)
    _play_static(timeline, clip, backend)


@dataclass(frozen=True)
class LibraryEntry:
    """One script of a library folder: what it is, or why it cannot be used."""

    path: Path
    script: Script | None
    seconds: float = 0.0
    estimated: bool = False  # some speech is not cached yet: its length is estimated
    error: str | None = None


def library(folder: Path, options: Options) -> Iterator[LibraryEntry]:
    """Every .yaml script in `folder`, with its length from cached speech where it exists
    (estimated otherwise; nothing is rendered); invalid scripts carry their first error."""
    speaker = Speaker(
        SpeechCache(options.cache_dir) if options.cache_dir else SpeechCache.default()
    )
    for path in scripts_in([folder]):
        try:
            script = _load(path, options.variables)
            lengths, todo = cached_lengths(script, speaker)
            timeline = plan.build(script, _known_or_estimated(lengths), mix.file_length)
        except GuidedAudioError as exc:
            yield LibraryEntry(path, None, error=str(exc).splitlines()[0])
            continue
        yield LibraryEntry(path, script, timeline.seconds, bool(todo))


def _known_or_estimated(lengths: dict[Phrase, int]) -> plan.Measure:
    def measure(phrase: Phrase) -> int:
        return lengths.get(phrase) or plan.estimate_speech(phrase)

    return measure


def new_script(path: Path, title: str) -> Path:
    """A commented starter script that validates; refuses to overwrite."""
    if path.suffix not in (".yaml", ".yml"):
        path = path.with_name(f"{path.name}.yaml")
    if path.exists():
        raise UsageError(f"{path} already exists; choose another name (nothing was written)")
    schema = authoring.schema_path().as_uri()
    sinks.write_text(path, authoring.starter(title, schema), exclusive=True)
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
