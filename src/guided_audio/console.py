"""The command line's console: errors turned into one line and an exit status, signals,
progress bars and the options several commands share.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import click

from guided_audio.errors import GuidedAudioError
from guided_audio.plan.length import parse_length
from guided_audio.play.devices import BACKENDS, DEFAULT_BACKEND
from guided_audio.session import DEFAULT_LOUDNESS_LUFS

F = TypeVar("F", bound=Callable[..., Any])


class Group(click.Group):
    """Errors become messages in one place: the project's errors exit with their own code."""

    def invoke(self, ctx: click.Context) -> Any:
        with _signals_interrupt():
            return self._invoke(ctx)

    def _invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except GuidedAudioError as exc:
            click.echo(str(exc), err=True)
            ctx.exit(exc.exit_code)
        except KeyboardInterrupt as exc:
            click.echo("\ninterrupted; nothing was left half-written", err=True)
            ctx.exit(128 + getattr(exc, "signum", signal.SIGINT))


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a closed terminal): stop as cleanly as on Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _terminate(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C: temp files go, the terminal is restored."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class Reporter:
    """Progress bars and notes on stderr; silent with -q."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def info(self, message: str) -> None:
        if not self.quiet:
            click.echo(message, err=True)

    @contextmanager
    def progress(
        self, label: str, total: int, detail: Callable[[], str] | None = None
    ) -> Iterator[Callable[[int], None]]:
        if self.quiet or not sys.stderr.isatty():  # bars are for people, not logs
            yield lambda _: None
            return
        bar: Any
        show = None if detail is None else (lambda _item: detail())
        with click.progressbar(
            length=total, label=label, file=sys.stderr, show_pos=True, item_show_func=show
        ) as bar:
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


def length_option(fn: F) -> F:
    return click.option(
        "--length",
        metavar="DURATION",
        callback=lambda _ctx, _param, value: None if value is None else parse_length(value),
        help="The session at this length (12m, 1h05m): silences and breaths give or take, "
        "speech is untouched.",
    )(fn)


def mastering_option(fn: F) -> F:
    return click.option(
        "--loudness",
        default=str(DEFAULT_LOUDNESS_LUFS),
        show_default=True,
        metavar="LUFS|off",
        help="Integrated loudness target: -16 suits phones, -19 is quieter; 'off' skips mastering.",
    )(fn)


def loudness_target(value: str) -> float | None:
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


def backend_option(fn: F) -> F:
    return click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        default=DEFAULT_BACKEND,
        show_default=True,
        help="Sound output: miniaudio (one stream, no compiler) or simpleaudio (Python < 3.12).",
    )(fn)
