"""What commands print besides their reports: a plan, its words a minute, a batch's
summary."""

from __future__ import annotations

import click

from guided_audio.batch import Outcome
from guided_audio.plan.pace import NARRATION_WPM, SENTENCE_WPM
from guided_audio.plan.timeline import Timeline, clock
from guided_audio.session import Paces


def show_plan(timeline: Timeline, marker: str) -> None:
    click.echo(timeline.title)
    sets = timeline.bilateral_sets()
    for index, span in enumerate(timeline.sections, start=1):
        click.echo(f"  {marker}{clock(span.start):>8}  {index}. {span.title}")
        for start, end, passes in sets:
            if span.start <= start < span.end:
                seconds = round((end - start) / timeline.rate)
                click.echo(
                    f"  {marker}{clock(start):>8}     bilateral, {seconds} s ({passes} passes)"
                )
    click.echo(f"  {marker}{clock(timeline.total):>8}  total ({timeline.seconds:.2f} s)")


def show_words(paces: Paces, marker: str) -> None:
    low, high = SENTENCE_WPM
    click.echo("words a minute (a calm speaker: 130-170; narration: 90-120)")
    for pace in paces.steps:
        flag = "!" if not low <= pace.wpm <= high else " "
        text = pace.text if len(pace.text) <= 50 else pace.text[:49] + "…"
        click.echo(
            f" {flag}{marker}{pace.wpm:5.0f}  {pace.words:3} words {pace.seconds:6.1f} s  {text}"
        )
    narration = paces.narration_wpm
    if narration is None:
        click.echo("  narration: no two say steps follow each other")
    else:
        low, high = NARRATION_WPM
        flag = "!" if not low <= narration <= high else ""
        click.echo(f"  narration: {marker}{narration:.0f} words a minute {flag}".rstrip())


def show_summary(outcomes: list[Outcome], quiet: bool) -> None:
    for outcome in outcomes:
        if outcome.report is not None and not quiet:
            click.echo(outcome.report.line())
        elif outcome.error is not None:
            click.echo(f"FAILED {outcome.script}: {outcome.error}", err=True)
    failed = sum(1 for o in outcomes if o.error is not None)
    if not quiet or failed:
        click.echo(f"{len(outcomes) - failed} exported, {failed} failed", err=True)
