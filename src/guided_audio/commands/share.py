"""`guided-audio share`: the click shell around share.bundle (parse options, one library
call, print where the bundle is)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from guided_audio.batch import scripts_in
from guided_audio.clinic.sharing import share_clients
from guided_audio.console import (
    SCRIPT,
    Reporter,
    length_option,
    loudness_target,
    mastering_option,
    quiet_option,
    render_options,
)
from guided_audio.errors import UsageError
from guided_audio.script.spoken import parse_vars
from guided_audio.session import Options
from guided_audio.share.bundle import FEED, ShareOptions, check_base_url, share


def _base_url(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else check_base_url(value)


def _note(path: Path | None) -> str:
    if path is None:
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--note {path}: cannot be read ({exc})") from None


@click.command("share")
@click.argument("files", nargs=-1, required=True, type=SCRIPT)
@click.option(
    "-o", "--output", required=True, type=click.Path(path_type=Path, file_okay=False),
    help="The folder for the bundle and its manifest (share.json, kept, never published).",
)  # fmt: skip
@click.option(
    "--base-url", callback=_base_url, metavar="https://HOST/PATH/",
    help="Where the bundle's folder will be served: adds a private podcast feed (feed.xml).",
)  # fmt: skip
@click.option(
    "--note", type=click.Path(path_type=Path, dir_okay=False),
    help="A text file: the therapist's words at the top of the client's page.",
)  # fmt: skip
@click.option("--title", default="Your sessions", show_default=True, help="The index's title.")
@click.option("--owner", default="guided-audio", help="Who the feed is locked to (an email).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Files rendered at once.")
@click.option("--force", is_flag=True, help="Bring an existing bundle up to date.")
@click.option(
    "--clients", type=click.Path(path_type=Path, dir_okay=False), metavar="CSV",
    help="A bundle per client in OUTPUT/FOLDER/: one row per client, a 'folder' column, an "
    "optional 'length', and the scripts' variables (see docs/clinic.md).",
)  # fmt: skip
@click.option("--resume", is_flag=True, help="With --clients: bring existing bundles up to date.")
@render_options
@length_option
@mastering_option
@quiet_option
def share_command(
    files: tuple[Path, ...],
    output: Path,
    base_url: str | None,
    note: Path | None,
    title: str,
    owner: str,
    jobs: int | None,
    force: bool,
    clients: Path | None,
    resume: bool,
    variables: tuple[str, ...],
    length: float | None,
    loudness: str,
    quiet: bool,
) -> None:
    """Make a private folder of sessions for one client: pages, audio and a feed.

    The folder OUTPUT/sessions-TOKEN/ (TOKEN: 128 random bits, kept in OUTPUT/share.json)
    holds index.html, a page per session that plays it with its chapters, a read-along
    transcript and a breath pacer, each session's MP3, VTT and chapters, and with
    --base-url a feed.xml for a podcast app. It works opened from disk or on any static
    HTTPS host; nothing on it is fetched from elsewhere. Run again with --force after a
    change: only what changed is replaced.

    \b
    Example:
      guided-audio share scripts/grounding.yaml scripts/body-scan.yaml -o share/sam \\
        --var client=Sam --length 12m --note note.txt --base-url https://example.org/s/
      guided-audio share scripts/ --clients clients.csv -o share/ --resume
    """
    options = Options(
        variables=parse_vars(variables), loudness_lufs=loudness_target(loudness), length_s=length
    )
    scripts = scripts_in(list(files))
    if not scripts:
        raise UsageError(f"no .yaml scripts in {', '.join(map(str, files))}")
    settings = ShareOptions(output, base_url, _note(note), title, owner, force or resume, jobs)
    if clients is not None:
        _share_clients(scripts, clients, settings, options, quiet, base_url)
    if resume:
        raise UsageError("--resume goes with --clients")
    bundle = share(scripts, settings, options, Reporter(quiet))
    if not quiet:
        click.echo(f"{bundle}/index.html")
        if base_url:
            click.echo(f"feed: {base_url}{FEED} (upload {bundle.name}/ to {base_url})")


def _share_clients(
    scripts: list[Path],
    clients: Path,
    settings: ShareOptions,
    options: Options,
    quiet: bool,
    base_url: str | None,
) -> None:
    worst = 0
    for shared in share_clients(scripts, clients, settings, options, Reporter(quiet)):
        if shared.bundle is None:
            click.echo(f"FAILED {shared.error}", err=True)
            worst = max(worst, shared.exit_code)
        elif not quiet:
            click.echo(f"{shared.bundle}/index.html")
            if base_url:
                click.echo(f"feed: {base_url}{FEED} (upload {shared.bundle.name}/ to {base_url})")
    sys.exit(worst)
