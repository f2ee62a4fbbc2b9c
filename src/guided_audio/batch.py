"""Several scripts at once: their speech made in one pool for all, then one file per
process; and a folder of scripts listed with their lengths (`list`).
"""

from __future__ import annotations

import contextlib
import multiprocessing
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from guided_audio.dsp.decode import file_length
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.export.naming import default_output
from guided_audio.files import exit_quietly_on_signals
from guided_audio.plan.builder import build, estimate_speech, phrases
from guided_audio.plan.length import span
from guided_audio.plan.timeline import Measure, Timeline
from guided_audio.play.feed import cached_lengths
from guided_audio.script.model import Phrase, Script
from guided_audio.session import (
    Options,
    Report,
    Reporter,
    Silent,
    export,
    load_with_voices,
    open_speaker,
    synthesize,
    timeline,
    validate,
)
from guided_audio.speech.speaker import Speaker


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
    defined = load_with_voices(script).variables
    used = {k: v for k, v in options.variables.items() if k in defined}
    return replace(options, variables=used)


def speak_all(scripts: list[Path], options: Options, reporter: Reporter) -> None:
    """Render the speech of every script at once, on every core: one pool of workers for
    the whole batch, so they stay busy across files and the voice loads once. Scripts that
    fail their checks are skipped, and a failure here is left to each script's own render,
    which reports it where it belongs."""
    wanted: list[Phrase] = []
    for path in scripts:
        try:
            wanted += phrases(validate(path, options_for(path, options), Silent()))
        except GuidedAudioError:
            continue
    with contextlib.suppress(GuidedAudioError):
        synthesize(open_speaker(options, reporter), wanted, reporter)


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
            default_output(script, audio_format, options.variables, folder, options.length_s),
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
    workers = max(1, min(jobs or options.resources.workers, len(work)))
    if workers == 1:
        yield from (_export_one(job) for job in work)
        return
    # Each file's process gets its share of the cores (encoders, inference threads).
    shared = replace(options, resources=options.resources.for_batch_files(workers))
    work = [replace(job, options=shared) for job in work]
    context = multiprocessing.get_context("fork")  # before any thread or engine is started
    # Ctrl-C reaches every worker (one process group) and the shutdown below sends SIGTERM:
    # either unwinds a worker's export (its temp file goes), and it exits quietly.
    pool = context.Pool(workers, initializer=exit_quietly_on_signals)
    try:
        yield from pool.imap_unordered(_export_one, work)
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM to every worker: each removes its temp file
        raise
    finally:
        pool.join()


@dataclass(frozen=True)
class LibraryEntry:
    """One script of a library folder: what it is, or why it cannot be used."""

    path: Path
    script: Script | None
    seconds: float = 0.0
    estimated: bool = False  # some speech is not cached yet: its length is estimated
    error: str | None = None
    span: str = ""  # the lengths a --length can make it: 6:40-31:00


def library(folder: Path, options: Options) -> Iterator[LibraryEntry]:
    """Every .yaml script in `folder`, with its length from cached speech where it exists
    (estimated otherwise; nothing is rendered); invalid scripts carry their first error."""
    speaker = Speaker(options.speech_cache(), resources=options.resources)
    for path in scripts_in([folder]):
        try:
            script = load_with_voices(path, options.variables)
            lengths, todo = cached_lengths(script, speaker)
            measure = _known_or_estimated(lengths)
            timeline = build(script, measure, file_length)
        except GuidedAudioError as exc:
            yield LibraryEntry(path, None, error=str(exc).splitlines()[0])
            continue
        reach = span(script, measure, file_length)
        yield LibraryEntry(path, script, timeline.seconds, bool(todo), span=reach)


def _known_or_estimated(lengths: dict[Phrase, int]) -> Measure:
    def measure(phrase: Phrase) -> int:
        return lengths.get(phrase) or estimate_speech(phrase)

    return measure
