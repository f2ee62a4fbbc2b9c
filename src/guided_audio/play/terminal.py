"""What `play` shows and which keys it takes: a few redrawn lines in a terminal (section,
time, a bar, a caption, a breath pacer, a key hint), or plain lines when there is none.

The terminal is put in cbreak mode for single keys and always restored: on quit, Ctrl-C,
a crash, or a closed terminal (SIGHUP, which the CLI turns into an interrupt).
"""

from __future__ import annotations

import math
import os
import re
import select
import shutil
import signal
import sys
import termios
import time
import tty
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from guided_audio.dsp.effects import RATE
from guided_audio.plan.timeline import Timeline, clock
from guided_audio.play.player import AtSection, Player

INTERRUPTS = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
FRAME_S = 0.1  # redraw and key poll interval
SECTION_BACK_WINDOW_S = 3.0  # "b" twice within this goes to the previous section
PACER_WIDTH = 24
LIGHT_WIDTH = 21  # a bilateral set's light moves across this many places
BAR_WIDTH = 40

HINT = "space pause · ←/→ 10 s · n/b section · +/- volume · m mute · x end gently · q quit · ? help"
HELP = """\
  space        pause / resume
  ← →          back / forward 10 seconds
  n  PgDn      next section
  b  PgUp      start of this section (twice within 3 s: the previous one)
  + -  0 9     volume up / down (3 dB steps)
  m            mute / unmute
  x            end gently: fade out and go to the closing section
  q            quit (your place is remembered: play --resume)
  ?            this help"""

# escape sequences -> key names; single characters stand for themselves
SEQUENCES = {
    "\x1b[C": "right",
    "\x1bOC": "right",
    "\x1b[D": "left",
    "\x1bOD": "left",
    "\x1b[5~": "pgup",
    "\x1b[6~": "pgdn",
    "\x1b[A": "up",
    "\x1b[B": "down",
}
PHASE_NAMES = {"in": "breathe in", "out": "breathe out", "hold": "hold", "rest": "rest"}
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def parse_keys(data: str) -> list[str]:
    keys: list[str] = []
    index = 0
    while index < len(data):
        for sequence, name in SEQUENCES.items():
            if data.startswith(sequence, index):
                keys.append(name)
                index += len(sequence)
                break
        else:
            if data[index] == "\x1b":  # an escape sequence we do not know: skip it whole
                match = re.match(r"\x1b(\[[0-9;]*[~A-Za-z]|O[A-Za-z])?", data[index:])
                index += len(match[0]) if match else 1
            else:
                keys.append(data[index])
                index += 1
    return keys


def caption(timeline: Timeline, sample: int) -> str:
    """The sentence being spoken, as written."""
    return timeline.sentence_at(sample)


def pacer(timeline: Timeline, sample: int) -> str:
    """'breathe in  ●●●●●●··········  3 s': grows on the inhale, holds, shrinks on the exhale."""
    span = timeline.breath_at(sample)
    if span is None:
        return ""
    progress = (sample - span.start) / max(span.end - span.start, 1)
    if span.kind == "in":
        fill = progress
    elif span.kind == "out":
        fill = 1.0 - progress
    else:  # a hold keeps the lungs as the phase before left them
        before = timeline.breath_at(span.start - 1)
        fill = 1.0 if before is not None and before.kind == "in" else 0.0
    dots = round(fill * PACER_WIDTH)
    left = math.ceil((span.end - sample) / RATE)
    return f"{PHASE_NAMES[span.kind]:<12}{'●' * dots}{'·' * (PACER_WIDTH - dots)}  {left} s"


def light(timeline: Timeline, sample: int) -> str:
    """'left  ····●··········  right' in a bilateral set: the light stands on each sound's
    side as it sounds and glides across to the next one's side."""
    for start, end, passes in timeline.bilateral_sets():
        if start <= sample < end:
            pass_length = (end - start) / passes
            index = min(passes - 1, int((sample - start) // pass_length))
            progress = (sample - start - index * pass_length) / pass_length
            side = -1.0 if index % 2 == 0 else 1.0
            x = side * math.cos(math.pi * progress)  # from this side to the other
            dot = round((x + 1) / 2 * (LIGHT_WIDTH - 1))
            return f"left  {'·' * dot}●{'·' * (LIGHT_WIDTH - 1 - dot)}  right"
    return ""


def status_line(player: Player, timeline: Timeline, exact: bool) -> str:
    position = player.position
    index = timeline.section_at(position)
    total = ("" if exact else "~") + clock(timeline.total)
    return (
        f"[{index + 1}/{len(timeline.sections)}] {timeline.sections[index].title}"
        f"  {clock(position)} / {total}"
    )


class PlainView:
    """No terminal: a line per section, keys off."""

    def __init__(self, quiet: bool, stream: TextIO | None = None) -> None:
        self.quiet = quiet
        self.stream = stream or sys.stderr

    def run(self, player: Player) -> str:
        shown = -1
        while not player.finished.wait(FRAME_S):
            if player.error is not None:
                break
            snapshot = player.snapshot()
            index = snapshot.timeline.section_at(player.position)
            if index != shown and not self.quiet:
                print(status_line(player, snapshot.timeline, snapshot.exact), file=self.stream)
                shown = index
        return "finished"

    def ask(self, question: str) -> str | None:
        print(question, file=self.stream, flush=True)
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None


class TerminalView:
    """The interactive screen: keys on stdin, a redrawn region on stderr."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.fd = sys.stdin.fileno()
        self._drawn = 0
        self._help = False
        self._last_back = -math.inf
        self._message = ""

    @contextmanager
    def _keys_mode(self) -> Iterator[None]:
        saved = termios.tcgetattr(self.fd)
        try:
            tty.setcbreak(self.fd)
            self._write("\x1b[?25l")  # hide the cursor
            yield
        finally:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, saved)
            self._write("\x1b[?25h\n")

    def _write(self, text: str) -> None:
        encoding = getattr(self.stream, "encoding", None) or "utf-8"
        data = text.encode(encoding, errors="replace")
        self.stream.flush()
        # A frame goes out whole: a terminal nobody reads takes part of a write, and an
        # interrupt between parts would leave half a character on the screen.
        held = signal.pthread_sigmask(signal.SIG_BLOCK, INTERRUPTS)
        try:
            while data:
                data = data[os.write(self.stream.fileno(), data) :]
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)

    def run(self, player: Player) -> str:
        with self._keys_mode():
            while not player.finished.is_set() and player.error is None:
                ready, _, _ = select.select([self.fd], [], [], FRAME_S)
                if ready:
                    data = os.read(self.fd, 64).decode("utf-8", errors="ignore")
                    for key in parse_keys(data):
                        if self._key(player, key) == "quit":
                            player.stop()
                            player.finished.wait(2.0)
                            self._draw(player)
                            return "quit"
                self._draw(player)
            self._draw(player)
        return "finished"

    def _key(self, player: Player, key: str) -> str | None:
        timeline = player.snapshot().timeline
        index = timeline.section_at(player.position)
        self._message = ""
        if key == " ":
            player.toggle_pause()
        elif key == "right":
            player.skip(10.0)
        elif key == "left":
            player.skip(-10.0)
        elif key in ("n", "pgdn"):
            if index + 1 < len(timeline.sections):
                player.seek(AtSection(index + 1))
            else:
                self._message = "this is the last section (x ends gently)"
        elif key in ("b", "pgup"):
            now = time.monotonic()
            again = now - self._last_back < SECTION_BACK_WINDOW_S
            player.seek(AtSection(max(0, index - 1) if again else index))
            self._last_back = now
        elif key in ("+", "=", "0", "up"):
            player.change_volume(+1)
        elif key in ("-", "9", "down"):
            player.change_volume(-1)
        elif key == "m":
            player.toggle_mute()
        elif key == "?":
            self._help = not self._help
        elif key == "x":
            player.end_gently()
            self._message = "ending gently…"
        elif key in ("q", "Q"):
            return "quit"
        return None

    def _lines(self, player: Player) -> list[str]:
        snapshot = player.snapshot()
        timeline, position = snapshot.timeline, player.position
        span = timeline.sections[timeline.section_at(position)]
        done = min(1.0, position / max(timeline.total, 1))
        bar = "━" * round(done * BAR_WIDTH) + "─" * (BAR_WIDTH - round(done * BAR_WIDTH))
        spoken = caption(timeline, position)
        state = []
        if player.paused:
            state.append("paused")
        volume = player.volume_db
        state.append("muted" if volume is None else f"volume {volume:+.0f} dB" if volume else "")
        if self._message:
            state.append(self._message)
        lines = [
            status_line(player, timeline, snapshot.exact),
            f"{bar}  section at {clock(position - span.start)}",
            f"  “{spoken}”" if spoken else "",
            f"  {pacer(timeline, position)}" if timeline.breath_at(position) else "",
            f"  {shown}" if (shown := light(timeline, position)) else "",
            "  ".join(s for s in state if s),
            HINT,
        ]
        if self._help:
            lines += HELP.splitlines()
        return lines

    def _draw(self, player: Player) -> None:
        width = max(20, shutil.get_terminal_size().columns - 1)
        lines = [line[:width] for line in self._lines(player)]
        up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
        body = "\n".join("\x1b[2K" + line for line in lines)
        extra = self._drawn - len(lines)  # clear what a longer frame (help) left below
        tail = ("\n\x1b[2K" * extra + f"\x1b[{extra}A") if extra > 0 else ""
        self._write(f"\r{up}{body}{tail}")
        self._drawn = len(lines)

    def ask(self, question: str) -> str | None:
        self._write(f"\n{question}\n> ")
        line = sys.stdin.readline()
        return line.rstrip("\n") if line else None


def interactive(quiet: bool) -> bool:
    """Keys and a redrawn screen only when a person is at a terminal."""
    return not quiet and sys.stdin.isatty() and sys.stderr.isatty()
