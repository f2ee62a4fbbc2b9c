"""A batch's units of work, run where the batch runs them (a forked worker of this machine,
or a Dask worker, which imports this module): speech for a set of lines, and one client's
export of one script.

Each comes in two forms. *In place*, for workers that share the speech cache and the
output folder with the batch (this machine, or a shared filesystem): the work is written
there, and the call returns counts. *Sent*, for workers that share no files: the speech
arrives with the call, the work is done in the worker's own temp folder, and the files
come back as bytes for the batch to write. Either way an export is made in a staging
folder and only whole files are moved into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from guided_audio import __version__
from guided_audio.errors import GuidedAudioError
from guided_audio.plan.builder import phrases
from guided_audio.script.model import Phrase
from guided_audio.session import Options, Silent, export, load_with_voices, sidecars
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.speaker import CACHE_FORMAT, Speaker


@dataclass(frozen=True)
class Job:
    """One client's export of one script: `folder/name` and its sidecars."""

    script: Path
    folder: str
    name: str  # the audio file's name, e.g. body-scan.mp3
    options: Options  # this client's variables (those the script uses) and length
    with_transcript: bool

    @property
    def files(self) -> list[str]:
        """The files it makes, as paths within the batch folder (the audio last)."""
        audio = Path(self.folder) / self.name
        vtt, chapters = sidecars(audio)
        return [str(p) for p in ([chapters, vtt] if self.with_transcript else [chapters])] + [
            str(audio)
        ]

    def recipe(self) -> str:
        """What the files are made from: a change to any of it makes them again."""
        made_from = {
            "version": __version__,
            "speech": CACHE_FORMAT,
            "script": hashlib.sha256(self.script.read_bytes()).hexdigest(),
            "variables": dict(sorted(self.options.variables.items())),
            "length": self.options.length_s,
            "loudness": self.options.loudness_lufs,
            "transcript": self.with_transcript,
            "name": self.name,
        }
        return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class Made:
    """A job's outcome: the audio's seconds and the lines it had to synthesise itself, or
    why it failed; `sent` holds the files' bytes when the worker shares no folder."""

    job: Job
    seconds: float = 0.0
    synthesised: int = 0
    sent: dict[str, bytes] | None = None
    error: str | None = None
    exit_code: int = 0


def lines(job: Job) -> list[Phrase]:
    """The lines a job speaks."""
    return phrases(load_with_voices(job.script, job.options.variables))


def _export(job: Job, folder: Path) -> Made:
    """Export `job` into `folder` (its files as `job.files` name them)."""
    try:
        speaker = Speaker(_cache(job.options))
        synthesised = len(speaker.missing(lines(job)))  # 0 when the batch made its speech
        out = folder / job.folder / job.name
        out.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _, _, report = export(job.script, out, job.options, Silent(), True, job.with_transcript)
    except GuidedAudioError as exc:
        return Made(job, error=str(exc), exit_code=exc.exit_code)
    return Made(job, report.seconds, synthesised)


def _cache(options: Options) -> SpeechCache:
    return SpeechCache(options.cache_dir) if options.cache_dir else SpeechCache.default()


def make_in_place(job: Job, staging: Path, out: Path) -> Made:
    """Export `job` into a folder of its own under `staging` (made by the batch; gone when
    the batch is stopped, so nothing is written after), then move its files into `out`,
    whole: the audio last."""
    own = Path(tempfile.mkdtemp(dir=staging))
    try:
        made = _export(job, own)
        if made.error is None:
            (out / job.folder).mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in job.files:
                os.replace(own / name, out / name)
        return made
    finally:
        shutil.rmtree(own, ignore_errors=True)


def make_and_send(job: Job, entries: dict[str, bytes]) -> Made:
    """Export `job` in this worker's own temp folder, with the speech cache entries it
    needs (`entries`, by key); its files come back as bytes."""
    with tempfile.TemporaryDirectory(prefix="guided-audio-") as temp:
        cache = SpeechCache(Path(temp) / "cache")
        for key, data in entries.items():
            cache.put(key, data)
        job = replace(job, options=replace(job.options, cache_dir=cache.root))
        made = _export(job, Path(temp) / "out")
        if made.error is not None:
            return made
        sent = {name: (Path(temp) / "out" / name).read_bytes() for name in job.files}
        return replace(made, sent=sent)


def speak_in_place(lines: list[Phrase], options: Options) -> int:
    """Render `lines` into the batch's speech cache, one by one; the count rendered."""
    speaker = Speaker(_cache(options), resources=options.resources)
    for phrase in lines:
        speaker.render(phrase)
    return len(lines)


def speak_and_send(lines: list[Phrase], options: Options) -> dict[str, bytes]:
    """Render `lines` in a temp cache of this worker's own; their entries come back as bytes,
    by key, for the batch's cache."""
    with tempfile.TemporaryDirectory(prefix="guided-audio-") as temp:
        cache = SpeechCache(Path(temp))
        speaker = Speaker(cache, resources=options.resources)
        for phrase in lines:
            speaker.render(phrase)
        return {speaker.key(p): data for p in lines if (data := cache.raw(speaker.key(p)))}
