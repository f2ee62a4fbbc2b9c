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
    make_and_send,
    make_in_place,
    speak_and_send,
    speak_in_place,
)
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.files import exit_quietly_on_signals, file_sha256
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
            for job in jobs:
                try:
                    yield make_in_place(job, staging, out)
                except Exception as exc:  # a fault of this job: the others go on
                    yield _failed(job, exc)
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
        return _failed(job, exc)
    return replace(made, job=job)


def _failed(job: Job, exc: BaseException) -> Made:
    return Made(job, error=f"{job.folder}/{job.name}: {type(exc).__name__}: {exc}", exit_code=1)


class ClusterRunner:
    """A Dask distributed cluster, through its scheduler at `address`."""

    def __init__(
        self,
        address: str,
        options: Options,
        out: Path,
        send: bool = False,
        sources: tuple[tuple[str, str], ...] = (),
    ) -> None:
        """`send`: speech and files go through Dask even where the workers share the
        batch's folders (a slow network filesystem, say); `sources`: the scripts and the
        files they use, (path, SHA-256), which shared workers must see as they are."""
        try:
            import dask
            import distributed
        except ImportError:
            raise GuidedAudioError(
                f"--cluster needs Dask's distributed, which is not installed: {CLUSTER_EXTRA}"
            ) from None
        self._distributed: Any = distributed
        self.client: Any
        _check_address(address)
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
            self.shares_files = not send and self._shares(options, out, sources)
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

    def _shares(self, options: Options, out: Path, sources: tuple[tuple[str, str], ...]) -> bool:
        """Whether every worker sees the batch's speech cache and output folder (a mark
        left in each), and the scripts and their files as they are here."""
        cache = open_speaker(options, Silent()).cache
        marks = []
        try:
            for folder in (cache.root, out):
                folder.mkdir(mode=0o700, parents=True, exist_ok=True)
                mark = folder / f".guided-audio-shared-{secrets.token_hex(8)}"
                mark.write_text(mark.name)
                marks.append(mark)
            seen = self.client.run(_sees, [str(m) for m in marks], list(sources))
        except OSError as exc:
            raise GuidedAudioError(f"cannot write in {exc.filename}: {exc.strerror}") from None
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
                    try:
                        result = future.result()
                        if not self.shares_files:
                            for key, data in result.items():
                                cache.put(key, data)
                    except GuidedAudioError:
                        raise
                    except Exception as exc:  # a worker lost again and again, a bad entry
                        raise GuidedAudioError(
                            f"the cluster could not make speech ({type(exc).__name__}: {exc}); "
                            "see the Dask workers' logs"
                        ) from exc
                    future.release()
                    advance(len(chunk))
        finally:
            self.client.cancel(futures)

    def run(self, jobs: list[Job], staging: Path, out: Path) -> Iterator[Made]:
        futures = {}
        sent: dict[str, Any] = {}  # speech entries and sources on the cluster, each sent once
        speaker = Speaker(jobs[0].options.speech_cache()) if jobs else None
        try:
            for job in jobs:
                if self.shares_files:
                    future = self.client.submit(make_in_place, job, staging, out, pure=False)
                else:
                    assert speaker is not None
                    entries, files = self._send(job, sent, speaker)
                    future = self.client.submit(make_and_send, job, entries, files, pure=False)
                futures[future] = job
            for future in self._distributed.as_completed(list(futures), loop=self.client.loop):
                yield _made(future, futures.pop(future))
                future.release()  # its files are written: the cluster may forget them
        finally:
            self.client.cancel(list(futures))

    def _send(
        self, job: Job, sent: dict[str, Any], speaker: Speaker
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The cluster's copies of what a job needs (speech entries by key, its sources by
        SHA-256), sent from here the first time a job needs them."""
        new: dict[str, bytes] = {}
        for key in job.keys:
            if key not in sent and key not in new:
                data = speaker.cache.raw(key)
                if data is not None:
                    new[key] = data
        for path, sha in job.sources:
            if sha not in sent and sha not in new:
                new[sha] = _read(Path(path))
        if new:
            sent.update(self.client.scatter(new, hash=False))
        return ({k: sent[k] for k in job.keys if k in sent},
                {sha: sent[sha] for _, sha in job.sources})  # fmt: skip


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


def _check_address(address: str) -> None:
    """A UsageError for what is not a scheduler's address (Dask's own would come late, and
    with a traceback as its half-made client is collected)."""
    from distributed.comm.addressing import parse_address, parse_host_port
    from distributed.comm.registry import get_backend

    try:
        scheme, location = parse_address(address)  # host:port alone is tcp, as in Dask
        get_backend(scheme)
        host, _ = parse_host_port(location, 8786)
        if not host:
            raise ValueError("no host")
    except (ValueError, TypeError):
        raise UsageError(
            f"--cluster {address}: not a scheduler's address, like tcp://HOST:8786"
        ) from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise GuidedAudioError(f"cannot read {path}: {exc.strerror}") from None


def _version() -> str:
    from guided_audio import __version__

    return __version__


def _sees(marks: list[str], sources: list[tuple[str, str]]) -> bool:
    """On a worker: whether it sees the batch's marks (the same files, by their content),
    and the scripts and their files as the batch does."""
    try:
        if not all(Path(p).read_text() == Path(p).name for p in marks):
            return False
        return all(file_sha256(Path(path)) == sha for path, sha in sources)
    except OSError:
        return False
