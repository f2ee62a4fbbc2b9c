"""`export --clients`: the options of a practice's batch and its printing (one library
call, clinic.practice.run_batch)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import click

from guided_audio.clinic.jobs import Made
from guided_audio.clinic.practice import BatchSettings, Tally, cluster_address, run_batch
from guided_audio.console import Reporter
from guided_audio.session import Options

F = TypeVar("F", bound=Callable[..., Any])


def clients_options(fn: F) -> F:
    """--clients, --resume, --cluster and --send-files."""
    fn = click.option(
        "--send-files", is_flag=True,
        help="On a cluster: send speech and files through Dask, even to workers that share "
        "the cache and -o folders (by default they write there when they see them).",
    )(fn)  # fmt: skip
    fn = click.option(
        "--cluster", metavar="tcp://HOST:8786",
        help="Run a --clients batch on a Dask cluster (default: GUIDED_AUDIO_CLUSTER; "
        "unset: this machine). Needs guided-audio[cluster].",
    )(fn)  # fmt: skip
    fn = click.option(
        "--resume", is_flag=True,
        help="With --clients: make only the files missing or changed since the last batch.",
    )(fn)  # fmt: skip
    fn = click.option(
        "--clients", type=click.Path(path_type=Path, dir_okay=False), metavar="CSV",
        help="A practice's batch: one row per client, a 'folder' column, an optional "
        "'length', and the scripts' variables; each client's files go to -o/FOLDER/.",
    )(fn)  # fmt: skip
    return fn


def export_clients(
    scripts: list[Path], settings: BatchSettings, options: Options, quiet: bool
) -> None:
    """Run the batch, print each failure as it comes and a summary; exit with the worst."""
    settings = replace(settings, cluster=cluster_address(settings.cluster))
    tally = Tally()
    for done in run_batch(scripts, settings, options, Reporter(quiet)):
        if isinstance(done, Tally):
            tally = done
        elif isinstance(done, Made) and done.error is not None:
            click.echo(f"FAILED {done.error}", err=True)
    if not quiet or tally.failed:
        click.echo(summary(tally), err=True)
    sys.exit(tally.exit_code)


def summary(tally: Tally) -> str:
    """One line: files made, skipped and failed, audio, time, and speech reuse."""
    reuse = f"{tally.synthesised / tally.distinct:.2f}" if tally.distinct else "-"
    skipped = f", {tally.skipped} up to date" if tally.skipped else ""
    return (
        f"{tally.made} made{skipped}, {len(tally.failed)} failed; "
        f"{tally.seconds / 60:.1f} min of audio in {tally.wall_s:.0f} s; speech: "
        f"{tally.synthesised} lines synthesised of {tally.distinct} distinct ({reuse})"
    )
