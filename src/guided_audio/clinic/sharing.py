"""`share --clients`: a private bundle per client (share.bundle), each in the client's
folder, with the speech of every client made once for all first; a failing client is
reported and the others go on."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from guided_audio.clinic.jobs import Job, Made, lines
from guided_audio.clinic.practice import BatchSettings, plan_jobs
from guided_audio.clinic.runners import LocalRunner
from guided_audio.errors import GuidedAudioError
from guided_audio.script.model import Phrase
from guided_audio.session import Options, Reporter, Silent, open_speaker
from guided_audio.share.bundle import ShareOptions, share


@dataclass(frozen=True)
class Shared:
    """One client's bundle, or why it was not made."""

    folder: str
    bundle: Path | None
    error: str | None = None
    exit_code: int = 0


def share_clients(
    scripts: list[Path],
    clients: Path,
    settings: ShareOptions,
    options: Options,
    reporter: Reporter,
) -> Iterator[Shared]:
    """Each client's bundle in `settings.out`/FOLDER, as it is made. With `settings.force`
    an existing bundle is brought up to date (only what changed is replaced)."""
    batch = BatchSettings(clients, settings.out, force=True)
    failed: list[Made] = []
    jobs = plan_jobs(scripts, batch, options, failed)
    if failed:  # a script that does not load fails every client's bundle
        raise ScriptFailed(failed[0].error or "", failed[0].exit_code)
    wanted: dict[Phrase, None] = {}
    for job in jobs:
        try:
            wanted.update(dict.fromkeys(lines(job)))
        except GuidedAudioError:
            continue  # reported with its client below
    missing = open_speaker(options, reporter).missing(wanted)
    if missing:
        LocalRunner(settings.jobs or options.resources.workers).speak(missing, options, reporter)
    folders = list(dict.fromkeys(job.folder for job in jobs))
    with reporter.progress(f"Sharing with {len(folders)} clients", len(folders)) as advance:
        for folder in folders:
            mine = [job for job in jobs if job.folder == folder]
            client = replace(options, variables=_variables(mine), length_s=mine[0].options.length_s)
            where = replace(settings, out=settings.out / folder)
            try:
                yield Shared(folder, share(scripts, where, client, Silent()))
            except GuidedAudioError as exc:
                yield Shared(folder, None, f"{folder}: {exc}", exc.exit_code)
            advance(1)


def _variables(jobs: list[Job]) -> dict[str, str]:
    """A client's variables, as its jobs (each script's own) hold them."""
    found: dict[str, str] = {}
    for job in jobs:
        found.update(job.options.variables)
    return found


class ScriptFailed(GuidedAudioError):
    """A script of the batch that does not load, with its own exit status."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
