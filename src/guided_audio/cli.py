"""A thin click shell: each command parses options, makes one library call, prints."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from guided_audio import __version__, session, sounds, voice
from guided_audio.errors import GuidedAudioError
from guided_audio.plan import Timeline
from guided_audio.script import parse_vars

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """Errors become messages in one place: the project's errors exit with their own code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GuidedAudioError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt:
            click.echo("\ninterrupted; nothing was left half-written", err=True)
            ctx.exit(130)


class Reporter:
    """Progress bars and notes on stderr; silent with -q."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    @contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        if self.quiet or not sys.stderr.isatty():  # bars are for people, not logs
            yield lambda _: None
            return
        bar: Any
        with click.progressbar(length=total, label=label, file=sys.stderr) as bar:
            yield bar.update


def quiet_option(fn: F) -> F:
    return click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors.")(fn)


def render_options(fn: F) -> F:
    fn = click.option(
        "--var",
        "variables",
        multiple=True,
        metavar="NAME=VALUE",
        help="Set a script variable (repeatable), e.g. --var client=Sam.",
    )(fn)
    return fn


def mastering_option(fn: F) -> F:
    return click.option(
        "--loudness",
        default=str(session.DEFAULT_LOUDNESS_LUFS),
        show_default=True,
        metavar="LUFS|off",
        help="Integrated loudness target: -16 suits phones, -19 is quieter; 'off' skips mastering.",
    )(fn)


def _loudness(value: str) -> float | None:
    if value.strip().lower() == "off":
        return None
    try:
        lufs = float(value)
    except ValueError:
        raise click.BadParameter(
            f"expected a LUFS value like -16, or 'off'; found {value!r}"
        ) from None
    if not -40.0 <= lufs <= -5.0:
        raise click.BadParameter(f"{lufs:g} LUFS is outside -40 .. -5")
    return lufs


SCRIPT = click.Path(path_type=Path, dir_okay=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="guided-audio")
def main() -> None:
    """Turn guided sessions written in YAML into exactly timed audio, offline.

    \b
    Example:
      guided-audio export scripts/grounding.yaml
      guided-audio play scripts/grounding.yaml
    """


@main.command()
@click.argument("files", nargs=-1, required=True, type=SCRIPT)
@render_options
@quiet_option
def validate(files: tuple[Path, ...], variables: tuple[str, ...], quiet: bool) -> None:
    """Check scripts without rendering them; exit 0 if all are valid, 2 if not.

    \b
    Example:
      guided-audio validate scripts/*.yaml
    """
    options = session.Options(variables=parse_vars(variables))
    worst = 0
    for path, error in zip(
        files, session.check_all(list(files), options, Reporter(quiet)), strict=True
    ):
        if error is None:
            if not quiet:
                click.echo(f"{path}: ok")
        else:
            click.echo(str(error), err=True)
            worst = max(worst, error.exit_code)
    sys.exit(worst)


@main.command("plan")
@click.argument("file", type=SCRIPT)
@click.option("--estimate", is_flag=True, help="Instant word-count estimate; renders nothing.")
@render_options
@quiet_option
def plan_command(file: Path, estimate: bool, variables: tuple[str, ...], quiet: bool) -> None:
    """Show sections, their start times and the total length.

    Accurate by default (speech is rendered into the cache if needed).

    \b
    Example:
      guided-audio plan scripts/grounding.yaml --estimate
    """
    options = session.Options(variables=parse_vars(variables))
    timeline = session.timeline(file, options, Reporter(quiet), estimate=estimate)
    marker = "~" if estimate else ""
    click.echo(timeline.title)
    for index, span in enumerate(timeline.sections, start=1):
        click.echo(f"  {marker}{session.clock(span.start):>8}  {index}. {span.title}")
    click.echo(f"  {marker}{session.clock(timeline.total):>8}  total ({timeline.seconds:.2f} s)")


@main.command()
@click.argument("file", type=SCRIPT)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output file (.mp3, .wav, .flac, .ogg). Default: sessions/NAME.mp3",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@render_options
@mastering_option
@quiet_option
def export(
    file: Path,
    output: Path | None,
    force: bool,
    variables: tuple[str, ...],
    loudness: str,
    quiet: bool,
) -> None:
    """Render a session to an audio file.

    \b
    Example:
      guided-audio export scripts/grounding.yaml -o grounding.wav --var client=Sam
    """
    options = session.Options(variables=parse_vars(variables), loudness_lufs=_loudness(loudness))
    out, rendered = session.export(file, output, options, Reporter(quiet), force=force)
    if not quiet:
        click.echo(
            f"{out}  ({session.clock(rendered.timeline.total)}, "
            f"{len(rendered.timeline.sections)} sections)"
        )


@main.command()
@click.argument("file", type=SCRIPT)
@render_options
@mastering_option
@quiet_option
def play(file: Path, variables: tuple[str, ...], loudness: str, quiet: bool) -> None:
    """Play a session through the speakers, showing the section and time.

    Ctrl-C stops.

    \b
    Example:
      guided-audio play scripts/grounding.yaml
    """
    options = session.Options(variables=parse_vars(variables), loudness_lufs=_loudness(loudness))
    reporter = Reporter(quiet)
    status = _PlayStatus(quiet)
    session.play(file, options, reporter, status.update)
    status.finish()


class _PlayStatus:
    """'[2/4] Arriving  01:23 / 10:00' on one line (a line per section when not a terminal)."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.section = -1
        self.tty = sys.stderr.isatty()

    def update(self, timeline: Timeline, sample: int) -> None:
        if self.quiet:
            return
        index = timeline.section_at(sample)
        head = f"[{index + 1}/{len(timeline.sections)}] {timeline.sections[index].title}"
        where = f"{session.clock(sample)} / {session.clock(timeline.total)}"
        if self.tty:
            click.echo(f"\r\033[K{head}  {where}", err=True, nl=False)
        elif index != self.section:
            click.echo(f"{head}  ({where})", err=True)
        self.section = index

    def finish(self) -> None:
        if self.tty and not self.quiet:
            click.echo("", err=True)


@main.command()
@click.option(
    "--preview",
    metavar="NAME",
    type=click.Choice(sorted(sounds.BELLS)),
    help="Play one strike of this bell.",
)
def bells(preview: str | None) -> None:
    """List the built-in bells (generated, no files), or play one.

    A bell step lasts its ring; with strikes: N it lasts (N-1) strike intervals plus a ring.

    \b
    Example:
      guided-audio bells --preview bowl
    """
    if preview:
        session.preview_bell(preview)
        return
    for name, design in sounds.BELLS.items():
        click.echo(
            f"{name:6} rings {design.ring_s:g} s; strikes every {design.strike_interval_s:g} s"
            f" ({design.fundamental_hz:g} Hz)"
        )


@main.command()
def voices() -> None:
    """List speech engines, their voices, and whether each is usable now.

    \b
    Example:
      guided-audio voices
    """
    for name in voice.ENGINES:
        engine = voice.engine(name)
        usable, detail = engine.status()
        mark = "usable" if usable else "not available"
        default = " (default)" if name == "piper" else ""
        click.echo(f"{name}{default}: {mark} — {detail}")
        for voice_name in engine.voices() or []:
            star = "*" if voice_name == engine.default_voice() else " "
            click.echo(f"  {star} {voice_name}")
