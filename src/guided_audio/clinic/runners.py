"""Where a batch's jobs run: this machine's processes (forked after the voice has loaded),
or a Dask distributed cluster (`--cluster tcp://HOST:8786`). Both run the same functions
of `clinic.jobs` and give the same files, byte for byte.

On a cluster, workers that see the batch's speech cache and output folder (a shared
filesystem, or one machine) write there; others are sent the speech each job needs and
send its files back. Dask reruns the jobs of a worker that is lost.
"""

from __future__ import annotations

import concurrent.futures
import math
import secrets
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

from guided_audio.clinic.jobs import (
    Job,
    Made,
    lines,
    make_and_send,
    make_in_place,
    speak_and_send,
    speak_in_place,
)
from guided_audio.errors import GuidedAudioError
from guided_audio.files import exit_quietly_on_signals
from guided_audio.forking import forked_pool
from guided_audio.resources import Resources
from guided_audio.script.model import Phrase
from guided_audio.session import Options, Reporter, Silent, open_speaker
from guided_audio.speech.speaker import Speaker

LINES_PER_TASK = 4  # a speech task on a cluster: enough to keep a worker's voice busy
CLUSTER_EXTRA = "pip install 'guided-audio[cluster]'"


class Runner(Protocol):
    """Runs a batch's two phases: the speech every job needs, then the jobs."""

    workers: int

    def speak(self, missing: list[Phrase], options: Options, reporter: Reporter) -> None: ...

    def run(self, jobs: list[Job], staging: Path, out: Path) -> Iterator[Made]: ...


class LocalRunner:
    """This machine: `workers` processes forked from this one make the speech, then the
    files, one at a time each."""

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def speak(self, missing: list[Phrase], options: Options, reporter: Reporter) -> None:
        mine = replace(options, resources=speech_share(options.resources))
        with reporter.progress("Synthesising speech", len(missing)) as advance:
            if self.workers == 1:
                for phrase in missing:
                    speak_in_place([phrase], mine)
                    advance(1)
                return
            with forked_pool(self.workers, exit_quietly_on_signals) as pool:
                futures = {pool.submit(speak_in_place, chunk, mine): chunk
                           for chunk in _chunks(missing)}  # fmt: skip
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    advance(len(futures[future]))

    def run(self, jobs: list[Job], staging: Path, out: Path) -> Iterator[Made]:
        if self.workers == 1:
            yield from (make_in_place(job, staging, out) for job in jobs)
            return
        with forked_pool(self.workers, exit_quietly_on_signals) as pool:
            futures = {pool.submit(make_in_place, job, staging, out): job for job in jobs}
            try:
                for future in concurrent.futures.as_completed(futures):
                    yield _made(future, futures[future])
            finally:
                for future in futures:
                    future.cancel()


def _made(future: Any, job: Job) -> Made:
    """A finished job's outcome; a job that raised (a fault, not bad input) is a failure of
    its own, reported with the others."""
    try:
        made: Made = future.result()
    except (Exception, concurrent.futures.CancelledError) as exc:
        return Made(job, error=f"{job.folder}/{job.name}: {type(exc).__name__}: {exc}", exit_code=1)
    return replace(made, job=job)


class ClusterRunner:
    """A Dask distributed cluster, through its scheduler at `address`."""

    def __init__(self, address: str, options: Options, out: Path, send: bool = False) -> None:
        """`send`: speech and files go through Dask even where the workers share the
        batch's folders (a slow network filesystem, say)."""
        try:
            import dask
            import distributed
        except ImportError:
            raise GuidedAudioError(
                f"--cluster needs Dask's distributed, which is not installed: {CLUSTER_EXTRA}"
            ) from None
        self._distributed: Any = distributed
        self.client: Any
        try:
            self.client = self._distributed.Client(address, set_as_default=False)
        except (OSError, TimeoutError):
            waited = dask.config.get("distributed.comm.timeouts.connect")
            raise GuidedAudioError(
                f"cannot reach the Dask scheduler at {address}: no answer within {waited}; "
                "start one there with `dask scheduler`, or check --cluster or "
                "GUIDED_AUDIO_CLUSTER"
            ) from None
        try:
            self.workers = self._check_workers(address)
            self.shares_files = not send and self._shares(options, out)
        except BaseException:
            self.client.close()
            raise

    def close(self) -> None:
        self.client.close()

    def _check_workers(self, address: str) -> int:
        try:
            self.client.wait_for_workers(1, timeout=30)
        except TimeoutError:
            raise GuidedAudioError(
                f"no Dask worker has joined the scheduler at {address}; start one with "
                f"`dask worker {address} --nthreads 1` on each machine"
            ) from None
        versions = self.client.run(_version)
        from guided_audio import __version__

        wrong = {worker: v for worker, v in versions.items() if v != __version__}
        if wrong:
            worker, version = next(iter(wrong.items()))
            raise GuidedAudioError(
                f"the Dask worker {worker} runs guided-audio {version}, this runs "
                f"{__version__}: install the same version on every machine"
            )
        return len(versions)

    def _shares(self, options: Options, out: Path) -> bool:
        """Whether every worker sees the batch's speech cache and output folder."""
        cache = open_speaker(options, Silent()).cache
        marks = []
        for folder in (cache.root, out):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            mark = folder / f".guided-audio-shared-{secrets.token_hex(8)}"
            mark.write_text(mark.name)
            marks.append(mark)
        try:
            seen = self.client.run(_sees, [str(m) for m in marks])
        finally:
            for mark in marks:
                mark.unlink(missing_ok=True)
        return all(seen.values())

    def speak(self, missing: list[Phrase], options: Options, reporter: Reporter) -> None:
        on_worker = replace(options, resources=speech_share(options.resources))
        chunks = _chunks(missing)
        task: Callable[..., Any] = speak_in_place if self.shares_files else speak_and_send
        futures = [self.client.submit(task, chunk, on_worker, pure=False) for chunk in chunks]
        cache = open_speaker(options, reporter).cache
        try:
            with reporter.progress("Synthesising speech", len(missing)) as advance:
                for future, chunk in zip(futures, chunks, strict=True):
                    entries = future.result()
                    if not self.shares_files:
                        for key, data in entries.items():
                            cache.put(key, data)
                    advance(len(chunk))
        finally:
            self.client.cancel(futures)

    def run(self, jobs: list[Job], staging: Path, out: Path) -> Iterator[Made]:
        speaker = open_speaker(jobs[0].options, Silent()) if jobs else None
        futures = {}
        for job in jobs:
            if self.shares_files:
                future = self.client.submit(make_in_place, job, staging, out, pure=False)
            else:
                entries = _entries(job, speaker)
                future = self.client.submit(make_and_send, job, entries, pure=False)
            futures[future] = job
        try:
            for future in self._distributed.as_completed(list(futures), loop=self.client.loop):
                yield _made(future, futures[future])
        finally:
            self.client.cancel(list(futures))


def _chunks(missing: list[Phrase]) -> list[list[Phrase]]:
    """Speech tasks of a few lines each: the longest lines first, dealt round, so no task
    ends long after the others."""
    ordered = sorted(missing, key=lambda phrase: len(phrase.text), reverse=True)
    tasks = math.ceil(len(ordered) / LINES_PER_TASK)
    return [ordered[n::tasks] for n in range(tasks)]


def speech_share(resources: Resources) -> Resources:
    """A batch's speech, wherever it is made: one core's share, and the decoder chunks of a
    process that only makes speech. The same everywhere: a line then reads the same to the
    bit on this machine or a cluster's."""
    return one_core(resources).for_speech_worker()


def one_core(resources: Resources) -> Resources:
    """A batch job's share, wherever it runs: one process, one inference thread, one MP3
    encoder (Dask workers run with `--nthreads 1`, one a core). The same share everywhere
    gives the same bytes: an MP3 encoded in parts is joined from them."""
    return replace(resources, workers=1, files_at_once=1)


def _entries(job: Job, speaker: Speaker | None) -> dict[str, bytes]:
    """The speech cache entries a job needs, to send with it."""
    assert speaker is not None
    found = {}
    for phrase in lines(job):
        key = speaker.key(phrase)
        data = speaker.cache.raw(key)
        if data is not None:
            found[key] = data
    return found


def _version() -> str:
    from guided_audio import __version__

    return __version__


def _sees(paths: list[str]) -> bool:
    """On a worker: whether it sees the batch's marks (the same files, by their content)."""
    try:
        return all(Path(p).read_text() == Path(p).name for p in paths)
    except OSError:
        return False
