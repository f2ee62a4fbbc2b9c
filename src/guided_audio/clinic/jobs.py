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

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from guided_audio import __version__
from guided_audio.errors import GuidedAudioError
from guided_audio.files import file_sha256
from guided_audio.plan.builder import phrases
from guided_audio.script.model import Phrase, Script
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
    sources: tuple[tuple[str, str], ...] = ()  # the script and files it uses: (path, sha256)
    keys: tuple[str, ...] = ()  # its lines' speech cache keys
    recipe: str = ""  # what the files are made from (see `recipe`)

    @property
    def files(self) -> list[str]:
        """The files it makes, as paths within the batch folder (the audio last)."""
        audio = Path(self.folder) / self.name
        vtt, chapters = sidecars(audio)
        return [str(p) for p in ([chapters, vtt] if self.with_transcript else [chapters])] + [
            str(audio)
        ]


def recipe(job: Job, speech_keys: list[str]) -> str:
    """What a job's files are made from: its script and the files it uses (by content), the
    speech of its lines (text, voice model and pace, by their cache keys), its variables,
    length, loudness and names, and this version. A change to any makes the files again."""
    made_from = {
        "version": __version__,
        "speech format": CACHE_FORMAT,
        "sources": [sha for _, sha in job.sources],
        "speech": speech_keys,
        "variables": dict(sorted(job.options.variables.items())),
        "length": job.options.length_s,
        "loudness": job.options.loudness_lufs,
        "transcript": job.with_transcript,
        "name": job.name,
    }
    return hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()


def sources(script: Script) -> list[Path]:
    """The script's file and every file it uses (beds, sounds, a cover, a voice model)."""
    found: dict[Path, None] = {script.path.absolute(): None}
    todo: list[object] = [script]
    while todo:
        value = todo.pop()
        if isinstance(value, Path):
            if value.is_file():
                found[value.absolute()] = None
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            todo += [getattr(value, f.name) for f in dataclasses.fields(value)]
        elif isinstance(value, tuple | list):
            todo += list(value)
    return list(found)


@dataclass(frozen=True)
class Made:
    """A job's outcome: the audio's seconds and the lines it had to synthesise itself, or
    why it failed; `sent` holds the files' bytes when the worker shares no folder."""

    job: Job
    seconds: float = 0.0
    synthesised: int = 0
    sent: dict[str, bytes] | None = None
    hashes: dict[str, str] | None = None  # each file's SHA-256, taken as it was made
    error: str | None = None
    exit_code: int = 0


def lines(job: Job) -> list[Phrase]:
    """The lines a job speaks."""
    return phrases(load_with_voices(job.script, job.options.variables))


def _export(job: Job, folder: Path) -> Made:
    """Export `job` into `folder` (its files as `job.files` name them)."""
    try:
        speaker = Speaker(job.options.speech_cache())
        synthesised = len(speaker.missing(lines(job)))  # 0 when the batch made its speech
        out = folder / job.folder / job.name
        out.parent.mkdir(mode=0o700, exist_ok=True)  # in `folder`: gone if the batch is
        _, _, report = export(job.script, out, job.options, Silent(), True, job.with_transcript)
    except GuidedAudioError as exc:
        return Made(job, error=str(exc), exit_code=exc.exit_code)
    return Made(job, report.seconds, synthesised)


def make_in_place(job: Job, staging: Path, out: Path) -> Made:
    """Export `job` into a folder of its own under `staging` (made by the batch; gone when
    the batch is stopped, so nothing is written after), then move its files into `out`,
    whole: the audio last."""
    own = Path(tempfile.mkdtemp(dir=staging))  # fails once the batch has ended
    try:
        made = _export(job, own)
        if made.error is None:
            made = replace(made, hashes={name: file_sha256(own / name) for name in job.files})
            if not staging.is_dir():  # the batch was stopped meanwhile: nothing goes out
                return replace(made, error="the batch was stopped", exit_code=1)
            (out / job.folder).mkdir(mode=0o700, parents=True, exist_ok=True)
            for name in job.files:
                os.replace(own / name, out / name)
        return made
    finally:
        shutil.rmtree(own, ignore_errors=True)


def make_and_send(job: Job, entries: dict[str, bytes], files: dict[str, bytes]) -> Made:
    """Export `job` in this worker's own temp folder, with the speech cache entries it
    needs (`entries`, by key) and its sources' bytes (`files`, by SHA-256), laid out as on
    the batch's machine (relative to the folder they share); its files come back as bytes."""
    with tempfile.TemporaryDirectory(prefix="guided-audio-") as temp:
        cache = SpeechCache(Path(temp) / "cache")
        for key, data in entries.items():
            cache.put(key, data)
        paths = [Path(path) for path, _ in job.sources]
        root = Path(os.path.commonpath([p.parent for p in paths])) if paths else Path("/")
        for path, sha in job.sources:
            copy = Path(temp) / "sources" / Path(path).relative_to(root)
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(files[sha])
        script = Path(temp) / "sources" / job.script.relative_to(root)
        job = replace(job, script=script, options=replace(job.options, cache_dir=cache.root))
        (Path(temp) / "out").mkdir()
        made = _export(job, Path(temp) / "out")
        if made.error is not None:
            return made
        sent = {name: (Path(temp) / "out" / name).read_bytes() for name in job.files}
        hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sent.items()}
        return replace(made, sent=sent, hashes=hashes)


def speak_in_place(lines: list[Phrase], options: Options) -> int:
    """Render `lines` into the batch's speech cache, one by one; the count rendered."""
    speaker = Speaker(options.speech_cache(), resources=options.resources)
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
