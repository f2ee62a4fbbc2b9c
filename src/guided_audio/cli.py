"""A thin click shell: each command parses options, makes one library call, prints."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from guided_audio import __version__, session
from guided_audio.audition import LineVoice, preview_bell, say
from guided_audio.batch import export_many, library, options_for, plan_many, scripts_in, speak_all
from guided_audio.clinic.practice import BatchSettings
from guided_audio.commands.clients import clients_options, export_clients
from guided_audio.commands.schema import schema_command
from guided_audio.commands.share import share_command
from guided_audio.console import (
    SCRIPT,
    Group,
    Reporter,
    backend_option,
    length_option,
    loudness_target,
    mastering_option,
    quiet_option,
    render_options,
)
from guided_audio.dsp import sounds
from guided_audio.dsp.effects import RATE
from guided_audio.errors import GuidedAudioError, UsageError
from guided_audio.export.encode import FORMATS
from guided_audio.export.naming import DEFAULT_FOLDER, output_path
from guided_audio.plan.timeline import clock
from guided_audio.play import home, terminal
from guided_audio.script.grammar import ENGINES
from guided_audio.script.loader import PACE_RANGE
from guided_audio.script.spoken import parse_vars
from guided_audio.session import Options, PlayOptions, check_all, new_script
from guided_audio.show import show_plan, show_summary, show_words
from guided_audio.speech import registry


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
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
    options = Options(variables=parse_vars(variables))
    worst = 0
    for path, error in zip(files, check_all(list(files), options, Reporter(quiet)), strict=True):
        if error is None:
            if not quiet:
                click.echo(f"{path}: ok")
        else:
            click.echo(str(error), err=True)
            worst = max(worst, error.exit_code)
    sys.exit(worst)


@main.command("plan")
@click.argument("files", nargs=-1, required=True, type=SCRIPT)
@click.option("--estimate", is_flag=True, help="Instant word-count estimate; renders nothing.")
@click.option(
    "--words",
    is_flag=True,
    help="Also each spoken step's words a minute, flagged outside a guide's range.",
)
@render_options
@length_option
@quiet_option
def plan_command(
    files: tuple[Path, ...],
    estimate: bool,
    words: bool,
    variables: tuple[str, ...],
    length: float | None,
    quiet: bool,
) -> None:
    """Show sections, their start times and the total length.

    Accurate by default (speech is rendered into the cache if needed). Several scripts, or
    a folder, have all of their speech made at once on every core: `play` then starts at
    once for each. With --words, each `say` step's pace in words a minute (from its first
    sound to its last, its sentence and clause pauses included), marked `!` outside 130-170
    (a calm speaker), and the narration rate over consecutive `say` steps (aim for 90-120).

    \b
    Example:
      guided-audio plan scripts/grounding.yaml --estimate
      guided-audio plan scripts/body-scan.yaml --length 12m
      guided-audio plan scripts/
    """
    options = Options(variables=parse_vars(variables), length_s=length)
    marker = "~" if estimate else ""
    scripts = scripts_in(list(files))
    if len(scripts) == 1 and not files[0].is_dir():
        timeline = session.timeline(scripts[0], options, Reporter(quiet), estimate=estimate)
        show_plan(timeline, marker)
        if words:
            show_words(session.paces(scripts[0], timeline, options), marker)
        return
    if not scripts:
        raise UsageError(f"no .yaml scripts in {', '.join(map(str, files))}")
    worst, shown = 0, 0
    for path, planned in plan_many(scripts, options, Reporter(quiet), estimate):
        if isinstance(planned, GuidedAudioError):
            click.echo(str(planned), err=True)
            worst = max(worst, planned.exit_code)
            continue
        if shown:
            click.echo()
        shown += 1
        click.echo(str(path))
        show_plan(planned, marker)
        if words:
            show_words(session.paces(path, planned, options_for(path, options)), marker)
    sys.exit(worst)


@main.command()
@click.argument("files", nargs=-1, required=True, type=SCRIPT)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Output file (its suffix is the format), or a folder. Default: sessions/NAME.mp3",
)
@click.option(
    "--format",
    "audio_format",
    type=click.Choice([suffix[1:] for suffix in FORMATS]),
    help="The format, when -o names no file (or it must agree with its suffix).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    help="Files rendered at once (default: GUIDED_AUDIO_JOBS, else cores).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing output file.")
@click.option(
    "--transcript/--no-transcript",
    default=True,
    help="Write NAME.vtt beside the audio: timed sentences and words (default: on).",
)
@clients_options
@render_options
@length_option
@mastering_option
@quiet_option
def export(
    files: tuple[Path, ...],
    output: Path | None,
    audio_format: str | None,
    jobs: int | None,
    force: bool,
    transcript: bool,
    clients: Path | None,
    resume: bool,
    cluster: str | None,
    send_files: bool,
    variables: tuple[str, ...],
    length: float | None,
    loudness: str,
    quiet: bool,
) -> None:
    """Render sessions to audio files, with chapters, tags, a transcript and a measured report.

    Formats: mp3 (default), wav, flac, ogg, opus, m4a, m4b. Scripts export in parallel into
    -o (default sessions/); --var values and --length join the names (body-scan-12m.mp3).
    With --clients, every client's files go to -o/FOLDER/ (see docs/clinic.md).

    \b
    Example:
      guided-audio export scripts/grounding.yaml -o grounding.m4b
      guided-audio export scripts/ --var client=Sam --length 12m -j 2
      guided-audio export scripts/ --clients clients.csv -o library/ --resume
    """
    lufs = loudness_target(loudness)
    options = Options(variables=parse_vars(variables), loudness_lufs=lufs, length_s=length)
    scripts = scripts_in(list(files))
    if clients is not None:
        batch = BatchSettings(clients, output or DEFAULT_FOLDER, audio_format or "mp3",
                              transcript, resume, force, jobs, cluster, send_files)  # fmt: skip
        export_clients(scripts, batch, options, quiet)
    if resume or cluster or send_files:
        raise UsageError("--resume, --cluster and --send-files go with --clients")
    if len(scripts) == 1 and not files[0].is_dir():
        out = output_path(scripts[0], output, audio_format, options.variables, length)
        _, _, report = session.export(scripts[0], out, options, Reporter(quiet), force, transcript)
        if not quiet:
            click.echo(report.line())
        return
    if output is not None and output.suffix.lower() in FORMATS:
        raise UsageError(f"-o {output}: with several scripts, -o names a folder")
    if not scripts:
        raise UsageError(f"no .yaml scripts in {', '.join(map(str, files))}")
    folder = output or DEFAULT_FOLDER
    speak_all(scripts, options, Reporter(quiet))  # every file's speech, every core
    outcomes = []
    with Reporter(quiet).progress(f"Exporting {len(scripts)} files", len(scripts)) as advance:
        for outcome in export_many(
            scripts, folder, audio_format or "mp3", options, jobs, force, transcript
        ):
            outcomes.append(outcome)
            advance(1)
    show_summary(sorted(outcomes, key=lambda o: scripts.index(o.script)), quiet)
    sys.exit(max((o.exit_code for o in outcomes), default=0))


@main.command()
@click.argument("file", type=SCRIPT)
@click.option("--resume", is_flag=True, help="Continue where the last play of FILE stopped.")
@click.option(
    "--from", "from_section", metavar="SECTION", help="Start at a section (number or title)."
)
@click.option("--journal", is_flag=True, help="Afterwards, answer the session's reflect questions.")
@backend_option
@render_options
@length_option
@mastering_option
@quiet_option
def play(
    file: Path,
    resume: bool,
    from_section: str | None,
    journal: bool,
    backend: str,
    variables: tuple[str, ...],
    length: float | None,
    loudness: str,
    quiet: bool,
) -> None:
    """Play a session through the speakers, with keys, captions and a breath pacer.

    Sound starts at once; speech not yet cached is synthesised while it plays.
    Keys: space pause, arrows 10 s, n/b section, +/- volume, m mute, x end gently,
    q quit (remembered for --resume), ? help. Without a terminal: plain lines, no keys.

    \b
    Example:
      guided-audio play scripts/grounding.yaml
      guided-audio play scripts/body-scan.yaml --length 8m --resume
    """
    lufs = loudness_target(loudness)
    options = Options(variables=parse_vars(variables), loudness_lufs=lufs, length_s=length)
    view = terminal.TerminalView() if terminal.interactive(quiet) else terminal.PlainView(quiet)
    play_options = PlayOptions(backend, resume, from_section, journal)
    played = session.play(file, options, Reporter(quiet), view, play_options)
    if played.journal is not None and not quiet:
        click.echo(f"journal: {played.journal}", err=True)
    if played.outcome == "quit" and not quiet:
        where = clock(played.position)
        click.echo(f"stopped at {where}; play --resume continues from there", err=True)


@main.command("journal")
@click.argument("number", type=int, required=False)
def journal_command(number: int | None) -> None:
    """List your journal entries, or show one by its number.

    Entries are written by `play --journal`, under sessions/journal/ (or
    $GUIDED_AUDIO_HOME/journal), readable by you only. Nothing is sent anywhere.

    \b
    Example:
      guided-audio journal
      guided-audio journal 3
    """
    entries = home.entries()
    if number is None:
        if not entries:
            click.echo(f"no journal entries yet in {home.journal_folder()}")
        for index, entry in enumerate(entries, start=1):
            answers = f"{entry.answers} answer" + ("" if entry.answers == 1 else "s")
            click.echo(f"{index:3}  {entry.when}  {entry.title}  ({answers})")
        return
    if not 1 <= number <= len(entries):
        raise UsageError(f"there is no journal entry {number}; there are {len(entries)}")
    entry = entries[number - 1]
    click.echo(f"{entry.when} · {entry.title}\n\n{entry.body}")


@main.command()
@click.option(
    "--preview",
    metavar="NAME",
    type=click.Choice(sorted(sounds.BELLS)),
    help="Play one strike of this bell.",
)
@backend_option
def bells(preview: str | None, backend: str) -> None:
    """List the built-in bells (generated, no files), or play one.

    A bell step lasts its ring; with strikes: N it lasts (N-1) strike intervals plus a ring.

    \b
    Example:
      guided-audio bells --preview bowl
    """
    if preview:
        preview_bell(preview, backend)
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
    for name in ENGINES:
        engine = registry.engine(name)
        usable, detail = engine.status()
        mark = "usable" if usable else "not available"
        default = " (default)" if name == "piper" else ""
        click.echo(f"{name}{default}: {mark} — {detail}")
        for voice_name in engine.voices() or []:
            star = "*" if voice_name == engine.default_voice() else " "
            click.echo(f"  {star} {voice_name}")


@main.command("say")
@click.argument("line")
@click.option(
    "--script",
    "script_path",
    type=SCRIPT,
    help="Speak in this script's voice, with its variables and pronunciations.",
)
@click.option("--engine", type=click.Choice(ENGINES), help="The speech engine.")
@click.option("--voice", "voice_name", metavar="NAME", help="A voice (see `voices`).")
@click.option(
    "--pace", type=click.FloatRange(*PACE_RANGE), help="Relative to the voice's guide pace (1.0)."
)
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write a file instead.")
@backend_option
@render_options
@mastering_option
@quiet_option
def say_command(
    line: str,
    script_path: Path | None,
    engine: str | None,
    voice_name: str | None,
    pace: float | None,
    output: Path | None,
    backend: str,
    variables: tuple[str, ...],
    loudness: str,
    quiet: bool,
) -> None:
    """Hear one line as a session would say it: fix a word, hear it at once.

    The line is read exactly as in a script: numbers and abbreviations said in words, exact
    pauses after sentences and clauses, [pause 2s] and {variables} allowed.

    \b
    Example:
      guided-audio say "Breathe in for 4-7-8... and rest." --pace 0.9
      guided-audio say "Welcome, {client}." --script scripts/grounding.yaml -o line.wav
    """
    options = Options(variables=parse_vars(variables), loudness_lufs=loudness_target(loudness))
    line_voice = LineVoice(script_path, engine, voice_name, pace)
    say(line, line_voice, options, Reporter(quiet), output, backend)
    if output is not None and not quiet:
        click.echo(f"{output}")


@main.command("list")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False), default="scripts")
@render_options
def list_command(folder: Path, variables: tuple[str, ...]) -> None:
    """Show the session library: title, length, sections and description of each script.

    Lengths come from cached speech (estimated, marked ~, where a script was never
    rendered); an invalid script is listed as INVALID with its first error.

    \b
    Example:
      guided-audio list
      guided-audio list ~/my-scripts
    """
    options = Options(variables=parse_vars(variables))
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder of scripts")
    entries = list(library(folder, options))
    if not entries:
        click.echo(f"no .yaml scripts in {folder}")
    for entry in entries:
        name = entry.path.name
        if entry.script is None:
            click.echo(f"{name:28} INVALID  {entry.error}")
            continue
        length = ("~" if entry.estimated else "") + clock(round(entry.seconds * RATE))
        sections, title = len(entry.script.sections), entry.script.title
        click.echo(f"{name:28} {length:>8} {entry.span:>13} {sections:2} sections  {title}")
        if entry.script.description:
            click.echo(f"{'':28} {entry.script.description}")


@main.command("new")
@click.argument("name", type=click.Path(path_type=Path))
@click.option("--title", help="The session's title (default: from NAME).")
def new_command(name: Path, title: str | None) -> None:
    """Write a commented starter script that validates; never overwrites a file.

    Its first line points editors at the installed schema (`guided-audio schema`).

    \b
    Example:
      guided-audio new scripts/evening-wind-down
    """
    default_title = name.stem.replace("-", " ").replace("_", " ").strip().capitalize()
    path = new_script(name, title or default_title or "A new session")
    click.echo(f"{path}: written; check it with: guided-audio validate {path}")


for command in (schema_command, share_command):
    main.add_command(command)
