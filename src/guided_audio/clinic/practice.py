"""A practice's batch: every client's library from one command (`export --clients`). The
clients are read and checked first (nothing is made from a bad list); the speech of every
job is made once for all (a line that no client's variables change is synthesised once);
then the jobs run on this machine or a Dask cluster, each finished file is recorded in the
folder's manifest, and a failing client or script is reported while the others finish.
"""

from __future__ import annotations

import errno
import os
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from guided_audio.clinic.jobs import Job, Made, recipe, sources
from guided_audio.clinic.manifest import Manifest
from guided_audio.clinic.roster import Client, read_clients
from guided_audio.clinic.runners import ClusterRunner, LocalRunner, Runner, one_core
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.export.naming import safe_name
from guided_audio.files import file_sha256, replace_with
from guided_audio.plan.builder import estimate_speech, phrases
from guided_audio.script.model import Phrase, Script
from guided_audio.session import Options, Reporter, fitted, load_with_voices, open_speaker

CLUSTER_ENV = "GUIDED_AUDIO_CLUSTER"


@dataclass(frozen=True)
class BatchSettings:
    """How a batch runs: where its files go, and on what."""

    clients: Path
    out: Path
    audio_format: str = "mp3"
    with_transcript: bool = True
    resume: bool = False
    force: bool = False
    jobs: int | None = None  # files at once on this machine (None: one a core)
    cluster: str | None = None  # a Dask scheduler's address (None: this machine)
    send_files: bool = False  # through Dask, even to workers that share the folders


@dataclass
class Tally:
    """What a batch did: files made, skipped as up to date and failed; the audio's seconds;
    the lines synthesised against the distinct lines the batch speaks."""

    made: int = 0
    skipped: int = 0
    failed: list[Made] = field(default_factory=list)
    seconds: float = 0.0
    synthesised: int = 0
    distinct: int = 0
    wall_s: float = 0.0

    @property
    def exit_code(self) -> int:
        return max((made.exit_code for made in self.failed), default=0)


def cluster_address(given: str | None) -> str | None:
    """--cluster, else GUIDED_AUDIO_CLUSTER, else None (this machine)."""
    return given or os.environ.get(CLUSTER_ENV) or None


def plan_jobs(
    scripts: list[Path], settings: BatchSettings, options: Options, failed: list[Made]
) -> list[Job]:
    """Every client's export of every script; scripts that do not load are failures (in
    `failed`) and the others go on. A ScriptError locating every problem of the clients'
    list, or a UsageError for files in the way: nothing is made."""
    loaded: dict[Path, Script] = {}
    for path in scripts:
        try:
            loaded[path] = load_with_voices(path)
        except GuidedAudioError as exc:
            failed.append(Made(Job(path, "", path.name, options, False), error=str(exc),
                               exit_code=exc.exit_code))  # fmt: skip
    used = {name for script in loaded.values() for name in script.variables}
    # A script that does not load is reported as it is; its variables are unknown, so no
    # column is refused for being unused.
    clients = read_clients(settings.clients, used, strict=not failed)
    found = {path: _hashed(sources(script)) for path, script in loaded.items()}
    jobs = [_job(path, client, script.variables, settings, options, found[path])
            for client in clients for path, script in loaded.items()]  # fmt: skip
    names = [job.name for job in jobs[: len(loaded)]]
    if len(set(names)) != len(names):
        clash = next(name for name in names if names.count(name) > 1)
        raise UsageError(f"two scripts would both be exported as {clash}; export them apart")
    if not settings.resume and not settings.force:
        there = [name for job in jobs for name in job.files if (settings.out / name).exists()]
        if there:
            raise UsageError(
                f"{settings.out / there[0]} exists ({len(there)} files of this batch do): "
                "--resume makes only what is missing or changed, --force makes all again"
            )
    return jobs


def _job(
    path: Path,
    client: Client,
    defined: Mapping[str, str],
    settings: BatchSettings,
    options: Options,
    files: tuple[tuple[str, str], ...],
) -> Job:
    variables = {k: v for k, v in client.variables.items() if k in defined}
    length = client.length_s if client.length_s is not None else options.length_s
    mine = replace(options, variables=variables, length_s=length,
                   resources=one_core(options.resources))  # fmt: skip
    name = f"{safe_name(path.stem)}.{settings.audio_format}"
    return Job(path.absolute(), client.folder, name, mine, settings.with_transcript, files)


def _hashed(paths: list[Path]) -> tuple[tuple[str, str], ...]:
    try:
        return tuple((str(path), file_sha256(path)) for path in paths)
    except OSError as exc:
        raise GuidedAudioError(f"cannot read {exc.filename}: {exc.strerror}") from None


def runner_for(settings: BatchSettings, options: Options, jobs: list[Job]) -> Runner:
    if settings.cluster:
        files = tuple(dict.fromkeys(source for job in jobs for source in job.sources))
        return ClusterRunner(settings.cluster, options, settings.out, settings.send_files, files)
    return LocalRunner(max(1, settings.jobs or options.resources.workers))


def run_batch(
    scripts: list[Path], settings: BatchSettings, options: Options, reporter: Reporter
) -> Iterator[Made | Tally]:
    """Each job's outcome as it finishes, then the Tally. Checks everything first."""
    began = time.monotonic()
    tally = Tally()
    # Workers elsewhere run in other folders, with other settings: paths are made whole.
    settings = replace(settings, out=settings.out.absolute())
    options = replace(options, cache_dir=options.speech_cache().root.absolute())
    jobs = plan_jobs(scripts, settings, options, tally.failed)
    yield from tally.failed
    manifest = Manifest(settings.out)
    speaker = open_speaker(options, reporter)
    wanted: dict[Phrase, None] = {}
    ready = []
    estimate_s = 0.0  # the audio the jobs will make, for the progress bar
    for job in jobs:
        try:
            script = load_with_voices(job.script, job.options.variables)
        except GuidedAudioError as exc:  # a client's value the script refuses
            made = Made(job, error=_where(job, exc), exit_code=exc.exit_code)
            tally.failed.append(made)
            yield made
            continue
        spoken = phrases(script)
        keys = tuple(speaker.key(phrase) for phrase in spoken)
        job = replace(job, keys=keys, recipe=recipe(job, list(keys)))
        if settings.resume and manifest.up_to_date(job.files, job.recipe):
            tally.skipped += 1
            continue
        wanted.update(dict.fromkeys(spoken))
        ready.append(job)
        estimate_s += _estimated_s(script, job)
    runner = runner_for(settings, options, ready)
    try:
        missing = speaker.missing(wanted)
        tally.distinct, tally.synthesised = len(wanted), len(missing)
        if missing:
            runner.speak(missing, options, reporter)
        yield from _jobs(runner, ready, settings, manifest, tally, reporter, estimate_s / 60)
    finally:
        close = getattr(runner, "close", None)
        if close is not None:
            close()
    tally.wall_s = time.monotonic() - began
    yield tally


def _jobs(
    runner: Runner,
    jobs: list[Job],
    settings: BatchSettings,
    manifest: Manifest,
    tally: Tally,
    reporter: Reporter,
    estimate: float,
) -> Iterator[Made]:
    """Each job's outcome as it comes, its files written (if sent) and recorded;
    `estimate`: the audio minutes they will make."""

    def detail() -> str:
        return f"{tally.seconds / 60:.1f} of ~{estimate:.1f} audio min"

    staging = settings.out / f".batch-{secrets.token_hex(6)}"  # this batch's own
    try:
        staging.mkdir(mode=0o700, parents=True)
        with reporter.progress(f"Exporting {len(jobs)} files", len(jobs), detail) as advance:
            for made in runner.run(jobs, staging, settings.out):
                if made.error is None and made.sent is not None:
                    _write_sent(settings.out, made.sent)
                if made.error is None:
                    manifest.record(made.job.files, made.job.recipe, made.hashes or {})
                    tally.made += 1
                    tally.seconds += made.seconds
                    tally.synthesised += made.synthesised
                else:
                    made = replace(made, error=_where(made.job, made.error))
                    tally.failed.append(made)
                advance(1)
                yield made
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        cause = f"the disk holding {settings.out} is full" if full else exc.strerror or str(exc)
        raise GuidedAudioError(
            f"cannot write the batch in {settings.out}: {cause}; free some space there or "
            "choose another -o (--resume goes on from the files already made)"
        ) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)  # what a stopped or lost worker left


def _where(job: Job, error: object) -> str:
    text = str(error)
    prefix = f"{job.folder}/{job.name}: "
    return text if text.startswith(prefix) else prefix + text


def _estimated_s(script: Script, job: Job) -> float:
    if job.options.length_s is not None:
        return job.options.length_s
    try:
        return fitted(script, estimate_speech, job.options).seconds
    except GuidedAudioError:
        return 0.0


def _write_sent(out: Path, sent: dict[str, bytes]) -> None:
    """Files a worker sent back, each written whole (temp file, then renamed)."""
    for name, data in sent.items():
        target = out / name
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        replace_with(target, data)
