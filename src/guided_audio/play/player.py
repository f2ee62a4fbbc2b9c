"""Stage 5b: the live player. One device stream for the whole session, fed from a bounded
queue of rendered blocks, with speech synthesised ahead of the play position.

Three threads share a `Player`:
- a synthesiser (`LiveFeed`) renders missing phrases in session order into the cache; the
  timeline is rebuilt from real lengths where known and estimates beyond, and only the part
  before the first estimate (less a guard) is *final*: it plays exactly as an export would;
- a renderer renders blocks of the mix at the play position, never past what is final;
- the device's callback (`Player.pull`) takes blocks, applies fades and volume, and never
  blocks. Commands from the keys bump a generation: blocks of an older one are dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, Audio, seconds_to_samples
from guided_audio.errors import UsageError
from guided_audio.play.feed import Feed, Snapshot

BLOCK = seconds_to_samples(0.25)  # rendered ahead in blocks this long
PREFILL = 2 * BLOCK  # rendered before the device starts, so it never begins with an underrun
QUEUE_BLOCKS = 12  # about 3 s rendered ahead of the device
PAUSE_FADE = seconds_to_samples(0.03)  # pause, resume, seek and quit fade this fast: no click
END_FADE = seconds_to_samples(4.0)  # "end gently"
VOLUME_RAMP = seconds_to_samples(0.05)
VOLUME_STEP_DB = 3.0
VOLUME_MIN_DB = -30.0
SEEK_S = 10.0


# --- where to go -----------------------------------------------------------------------------
@dataclass(frozen=True)
class At:
    """A sample of the session."""

    sample: int


@dataclass(frozen=True)
class AtSection:
    """The start of a section (resolved once it is final: earlier speech decides it)."""

    index: int


@dataclass(frozen=True)
class By:
    """Relative to where the sound stopped."""

    samples: int


Target = At | AtSection | By


def _resolve(target: At | AtSection, snapshot: Snapshot) -> int | None:
    timeline = snapshot.timeline
    if isinstance(target, AtSection):
        index = min(max(target.index, 0), len(timeline.sections) - 1)
        start = timeline.sections[index].start
        return start if start < snapshot.final or snapshot.exact else None
    if target.sample < snapshot.final or snapshot.exact:
        return min(max(target.sample, 0), timeline.total)
    return None


@dataclass
class _Fade:
    """A fade out over `length` samples, then `then` happens."""

    length: int
    then: str  # pause | seek | stop | end
    target: Target | None = None
    done: int = 0


# --- the player ------------------------------------------------------------------------------
class Player:
    """Position, pause, seek, volume; `pull` feeds the device and never blocks."""

    def __init__(self, feed: Feed, start: At | AtSection = At(0)) -> None:
        self.feed = feed
        self._lock = threading.Condition()
        self._generation = 0
        self._target: At | AtSection = start
        self._blocks: deque[tuple[int, int, Audio]] = deque()  # (generation, start, samples)
        self._offset = 0  # into the first block
        self._position = 0  # the next sample handed to the device
        self._awaiting = True  # a new generation's start is not resolved yet
        self._paused = False
        self._fade: _Fade | None = None
        self._fade_in = 0 if start == At(0) else PAUSE_FADE  # samples of fade-in left
        self._gain = 1.0  # applied volume (ramps to the target)
        self._ramp_to, self._ramp_step = 1.0, 0.0
        self._volume_db = 0.0
        self._muted = False
        self._ended = False  # the renderer reached the end of this generation
        self.finished = threading.Event()
        self.error: BaseException | None = None
        self.underruns = 0
        self._closed = False
        self._renderer = threading.Thread(target=self._render_loop, name="render", daemon=True)
        self._renderer.start()

    # --- what the screen asks --------------------------------------------------------------
    @property
    def position(self) -> int:
        return self._position

    @property
    def paused(self) -> bool:
        return self._paused

    @property
    def volume_db(self) -> float | None:
        """The volume relative to the master (None: muted)."""
        return None if self._muted else self._volume_db

    def snapshot(self) -> Snapshot:
        return self.feed.snapshot()

    def wait_ready(self, frames: int, timeout_s: float) -> bool:
        """Until `frames` are buffered (or the end is, or a pause); False on timeout."""
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while self.error is None:
                buffered = sum(len(b) for g, _, b in self._blocks if g == self._generation)
                if buffered - self._offset >= frames or self._ended or self._paused:
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._lock.wait(min(left, 0.05))
        return True

    # --- commands (from the keys) ----------------------------------------------------------
    def toggle_pause(self) -> None:
        with self._lock:
            if self._paused:
                self._paused = False
                self._fade_in = PAUSE_FADE
            elif self._fade is None:
                self._fade = _Fade(PAUSE_FADE, "pause")

    def seek(self, target: Target, fade: int = PAUSE_FADE) -> None:
        with self._lock:
            if self._paused:  # a seek while paused lands, and stays paused
                self._jump(target)
            else:
                self._fade = _Fade(fade, "seek", target)

    def skip(self, seconds: float) -> None:
        self.seek(By(seconds_to_samples(seconds)))

    def end_gently(self) -> None:
        """Fade out slowly, then the closing section (or stop, if already in it)."""
        with self._lock:
            timeline = self.feed.snapshot().timeline
            last = len(timeline.sections) - 1
            in_last = timeline.section_at(self._position) >= last
            if self._paused:
                self._paused = False
                if in_last:
                    self.finished.set()
                else:
                    self._jump(AtSection(last))
            else:
                self._fade = (
                    _Fade(END_FADE, "stop") if in_last else _Fade(END_FADE, "seek", AtSection(last))
                )

    def stop(self) -> None:
        """Fade out quickly and finish."""
        with self._lock:
            if self._paused or self._awaiting:
                self.finished.set()
            else:
                self._fade = _Fade(PAUSE_FADE, "stop")

    def change_volume(self, steps: int) -> None:
        with self._lock:
            self._muted = False
            db = self._volume_db + steps * VOLUME_STEP_DB
            self._volume_db = min(0.0, max(VOLUME_MIN_DB, db))

    def toggle_mute(self) -> None:
        with self._lock:
            self._muted = not self._muted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify_all()
        self.feed.close()
        self._renderer.join(timeout=5)

    # --- the renderer thread ---------------------------------------------------------------
    def _jump(self, target: Target) -> None:
        """Start a new generation at `target` (the lock is held)."""
        if isinstance(target, By):
            base = self._position
            if self._awaiting and isinstance(self._target, At):
                base = self._target.sample  # a seek still pending: count from where it goes
            target = At(base + target.samples)
        self._generation += 1
        self._target = target
        self._blocks.clear()
        self._offset = 0
        self._ended = False
        self._awaiting = True
        self._fade_in = PAUSE_FADE
        self._lock.notify_all()

    def _render_loop(self) -> None:
        try:
            self._render()
        except BaseException as exc:  # the screen's loop reports it and stops
            with self._lock:
                self.error = exc
                self._lock.notify_all()
            self.finished.set()

    def _render(self) -> None:
        generation = -1
        target = self._target
        cursor: int | None = None
        while True:
            with self._lock:
                while not self._closed and (
                    (generation == self._generation and self._ended)
                    or len(self._blocks) >= QUEUE_BLOCKS
                ):
                    self._lock.wait(0.1)
                if self._closed:
                    return
                if generation != self._generation:
                    generation, target, cursor = self._generation, self._target, None
            snapshot = self.feed.snapshot()
            if cursor is None:
                cursor = _resolve(target, snapshot)
                if cursor is None:
                    self.feed.wait(0.05)
                    continue
                with self._lock:
                    if generation == self._generation:
                        self._position, self._awaiting = cursor, False
            total = snapshot.timeline.total
            if cursor >= total and snapshot.exact:
                with self._lock:
                    if generation == self._generation:
                        self._ended = True
                        self._lock.notify_all()
                continue
            stop = min(cursor + BLOCK, total if snapshot.exact else snapshot.final)
            if stop <= cursor:
                self.feed.wait(0.05)
                continue
            block = snapshot.source.render(cursor, stop)
            with self._lock:
                if generation == self._generation:
                    self._blocks.append((generation, cursor, block))
                    self._lock.notify_all()
            cursor = stop

    # --- the device callback ---------------------------------------------------------------
    def pull(self, frames: int) -> bytes:
        """`frames` stereo 16-bit frames for the device; silence where there is nothing."""
        out = np.zeros((frames, CHANNELS), dtype=np.float32)
        try:
            with self._lock:
                self._fill(out)
        except BaseException as exc:  # never raise into the audio thread
            self.error = exc
            self.finished.set()
        return effects.to_int16(out).tobytes()

    def _fill(self, out: Audio) -> None:
        filled = 0
        while filled < len(out) and not self.finished.is_set():
            if self._paused:
                return
            want = len(out) - filled
            if self._fade is not None:
                want = min(want, self._fade.length - self._fade.done)
            piece = self._take(want)
            if piece is None:
                if self._fade is not None:  # nothing left to fade: act now
                    self._finish_fade()
                    continue
                if self._ended:
                    self.finished.set()
                elif not self._awaiting:
                    self.underruns += 1
                return
            count = len(piece)
            out[filled : filled + count] = self._shape(piece)
            filled += count
            self._position += count
            if self._fade is not None and self._fade.done >= self._fade.length:
                self._finish_fade()

    def _take(self, limit: int) -> Audio | None:
        while self._blocks and self._blocks[0][0] != self._generation:
            self._blocks.popleft()
        if not self._blocks or limit <= 0:
            return None
        _, _, block = self._blocks[0]
        piece = block[self._offset : self._offset + limit]
        self._offset += len(piece)
        if self._offset >= len(block):
            self._blocks.popleft()
            self._offset = 0
            self._lock.notify_all()  # room for the renderer
        return piece

    def _shape(self, piece: Audio) -> Audio:
        """Volume, fades: untouched (bit-exact) when none applies."""
        count = len(piece)
        target = 0.0 if self._muted else effects.db_to_gain(self._volume_db)
        envelope: np.ndarray | None = None
        if self._gain != target:
            if target != self._ramp_to:  # a straight ramp to the new volume
                self._ramp_to, self._ramp_step = target, (target - self._gain) / VOLUME_RAMP
            step = self._ramp_step
            ramp = self._gain + step * np.arange(1, count + 1)
            ramp = np.minimum(ramp, target) if step > 0 else np.maximum(ramp, target)
            envelope = ramp
            self._gain = float(ramp[-1])
        elif self._gain != 1.0:
            envelope = np.full(count, self._gain)
        if self._fade is not None:
            fade = self._fade
            progress = (fade.done + np.arange(count)) / fade.length
            shape = 0.5 + 0.5 * np.cos(np.pi * np.clip(progress, 0.0, 1.0))
            envelope = shape if envelope is None else envelope * shape
            fade.done += count
        elif self._fade_in > 0:
            done = PAUSE_FADE - self._fade_in
            progress = (done + np.arange(count)) / PAUSE_FADE
            shape = 0.5 - 0.5 * np.cos(np.pi * np.clip(progress, 0.0, 1.0))
            envelope = shape if envelope is None else envelope * shape
            self._fade_in = max(0, self._fade_in - count)
        if envelope is None:
            return piece
        shaped: Audio = (piece * envelope[:, None]).astype(np.float32)
        return shaped

    def _finish_fade(self) -> None:
        fade, self._fade = self._fade, None
        assert fade is not None
        if fade.then == "pause":
            self._paused = True
        elif fade.then == "stop":
            self.finished.set()
        elif fade.target is not None:
            self._jump(fade.target)


def section_target(titles: Sequence[str], wanted: str) -> AtSection:
    """A section by number (1-based) or title (any case); a UsageError lists them."""
    text = wanted.strip()
    if text.isdigit() and 1 <= int(text) <= len(titles):
        return AtSection(int(text) - 1)
    for index, title in enumerate(titles):
        if title.casefold() == text.casefold():
            return AtSection(index)
    listing = "; ".join(f"{i}. {t}" for i, t in enumerate(titles, start=1))
    raise UsageError(f"no section '{wanted}' in this session; its sections: {listing}")
