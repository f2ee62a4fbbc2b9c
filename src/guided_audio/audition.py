"""Hearing one thing before a session is made: a line spoken as a session would say it
(`guided-audio say`), and a bell (`guided-audio bells --preview`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from guided_audio.dsp import sounds
from guided_audio.errors import UsageError
from guided_audio.export.write import check_output, write_file
from guided_audio.mix.mixer import Windowed
from guided_audio.plan.timeline import SectionSpan, Timeline
from guided_audio.play.devices import DEFAULT_BACKEND, Clip, open_output
from guided_audio.play.feed import StaticFeed
from guided_audio.play.player import PREFILL, Player
from guided_audio.script.loader import line_script
from guided_audio.script.model import VoiceSpec
from guided_audio.session import Options, Rendered, Reporter, load_with_voices, render_script
from guided_audio.speech.registry import names


@dataclass(frozen=True)
class LineVoice:
    """`say`'s voice: a script's, changed by any of these that are given."""

    script: Path | None = None
    engine: str | None = None
    name: str | None = None
    pace: float | None = None


def say(
    line: str,
    line_voice: LineVoice,
    options: Options,
    reporter: Reporter,
    out: Path | None = None,
    backend: str = DEFAULT_BACKEND,
) -> Rendered:
    """Speak one line as a session would (normaliser, pauses, pace), to the speakers or `out`."""
    base = load_with_voices(line_voice.script, options.variables) if line_voice.script else None
    spec = base.voice if base else VoiceSpec()
    if line_voice.engine and line_voice.engine != spec.engine:
        spec = replace(spec, engine=line_voice.engine, name=None, model=None)
    if line_voice.name:
        known = names(spec.engine)
        if known is not None and line_voice.name not in known:
            raise UsageError(
                f"--voice {line_voice.name}: unknown {spec.engine} voice; "
                f"available: {', '.join(known)}"
            )
        spec = replace(spec, name=line_voice.name, model=None)
    if line_voice.pace is not None:
        spec = replace(spec, pace=line_voice.pace)
    script = line_script(line, base, spec)
    if out is not None:
        check_output(out, force=True)
    rendered = render_script(script, options, reporter)
    if out is not None:
        write_file(out, rendered.source)
        return rendered
    _play_static(rendered.timeline, rendered.source, backend)
    return rendered


def _play_static(timeline: Timeline, source: Windowed, backend: str) -> None:
    output = open_output(backend)
    player = Player(StaticFeed(timeline, source))
    try:
        player.wait_ready(PREFILL, timeout_s=10.0)
        output.start(player.pull, player.wait_ready)
        player.finished.wait()
        output.drain()
    finally:
        output.close()
        player.close()


def preview_bell(name: str, backend: str = DEFAULT_BACKEND) -> None:
    """Play one strike of a built-in bell."""
    clip = Clip(sounds.bell(name))
    timeline = Timeline(name, (), (SectionSpan(name, 0, clip.total),), (), clip.total)
    _play_static(timeline, clip, backend)
