"""The player's logic without a device: the callback is pulled as a device would pull it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from conftest import write
from guided_audio import session
from guided_audio.dsp.decode import file_length
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.mix.mixer import Windowed
from guided_audio.plan.builder import build
from guided_audio.plan.timeline import SectionSpan, Timeline
from guided_audio.play import terminal
from guided_audio.play.feed import StaticFeed
from guided_audio.play.player import (
    END_FADE,
    PAUSE_FADE,
    PREFILL,
    VOLUME_MIN_DB,
    VOLUME_RAMP,
    At,
    AtSection,
    Player,
)
from guided_audio.script.loader import load_script
from guided_audio.session import Options, Silent, live_feed, open_speaker

PERIOD = 1764  # 40 ms, as the device asks


class Ramp(Windowed):
    """Each sample holds its own index (scaled): where it came from is readable."""

    def __init__(self, seconds: float) -> None:
        self._total = int(seconds * RATE)

    @property
    def total(self) -> int:
        return self._total

    def render(self, start: int, stop: int) -> Audio:
        values = (np.arange(start, stop, dtype=np.float64) % 30000 + 1000) / 32767
        return np.repeat(values[:, None], CHANNELS, axis=1).astype(np.float32)


def _player(seconds: float = 20.0, start: At | AtSection | None = None) -> Player:
    source = Ramp(seconds)
    half = source.total // 2
    sections = (SectionSpan("One", 0, half), SectionSpan("Two", half, source.total))
    timeline = Timeline("T", (), sections, (), source.total)
    made = Player(StaticFeed(timeline, source), start or At(0))
    assert made.wait_ready(PREFILL, 5.0)
    return made


def _pull(p: Player, seconds: float) -> NDArray[np.int16]:
    """What the device would receive over `seconds`, period by period."""
    out = []
    for _ in range(int(seconds * RATE) // PERIOD):
        p.wait_ready(PERIOD, 1.0)
        out.append(np.frombuffer(p.pull(PERIOD), dtype=np.int16).reshape(-1, CHANNELS))
    return np.concatenate(out)


def _origin(samples: NDArray[np.int16]) -> NDArray[np.int64]:
    """The source index each (unfaded) sample came from."""
    return samples[:, 0].astype(np.int64) - 1000


def test_untouched_playback_is_the_source_exactly() -> None:
    p = _player(3.0)
    heard = _pull(p, 3.2)
    expected = (np.arange(Ramp(3.0).total) % 30000 + 1000).astype(np.int16)
    assert np.array_equal(heard[: len(expected), 0], expected)
    assert not heard[len(expected) :].any()
    assert p.finished.is_set()
    p.close()


def test_pause_loses_no_sample() -> None:
    p = _player()
    before = _pull(p, 1.0)
    p.toggle_pause()
    paused = _pull(p, 1.0)
    p.toggle_pause()
    after = _pull(p, 1.0)
    p.close()
    heard = np.concatenate([before, paused, after])[:, 0]
    sounding = heard[heard != 0]
    fade = PAUSE_FADE
    assert len(heard) - len(sounding) > 0.9 * RATE  # silence while paused
    # Outside the two fades every sample follows the one before it.
    steps = np.diff(sounding.astype(np.int64)) % 30000
    assert np.count_nonzero(steps != 1) <= 2 * fade


def test_seek_moves_by_exactly_ten_seconds_from_where_sound_stopped() -> None:
    p = _player()
    _pull(p, 1.0)  # 25 periods: exactly one second
    p.skip(10.0)
    heard = _pull(p, 0.5)[:, 0].astype(np.int64)
    p.close()
    fade = PAUSE_FADE
    # A quick fade out of the next samples, then silence until the new place is rendered.
    assert np.all(np.abs(heard[:fade]) <= (np.arange(RATE, RATE + fade) % 30000 + 1000))
    sound_again = fade + int(np.flatnonzero(heard[fade:])[0])
    target = RATE + fade + 10 * RATE  # 10 s after the last sample heard
    # Where the new run starts, read back from its unfaded end ...
    last = len(heard) - 1
    start = last - int((heard[last] - 1000 - target) % 30000)
    after = (np.arange(target, target + len(heard) - start) % 30000 + 1000)[fade:]
    assert np.array_equal(heard[start + fade :], after)
    # ... is where sound came back, less the first few fade-in samples that round to zero.
    assert 0 <= sound_again - start <= 8


def test_next_section_starts_at_its_first_sample() -> None:
    p = _player(start=AtSection(1))
    heard = _origin(_pull(p, 0.5))
    p.close()
    half = Ramp(20.0).total // 2
    assert heard[PAUSE_FADE] == (half + PAUSE_FADE) % 30000
    assert np.all(np.diff(heard[PAUSE_FADE:]) % 30000 == 1)


def test_volume_steps_are_3_db_and_settle_exactly() -> None:
    p = _player()
    _pull(p, 0.5)
    p.change_volume(-1)
    heard = _pull(p, 0.5).astype(np.float64)
    p.close()
    settled = heard[VOLUME_RAMP + PERIOD :, 0]
    start = RATE // 2 // PERIOD * PERIOD + VOLUME_RAMP + PERIOD
    source = (np.arange(start, start + len(settled)) % 30000 + 1000).astype(np.float64)
    ratio_db = 20 * np.log10(settled / source)
    assert np.allclose(ratio_db, -3.0, atol=0.01)
    assert p.volume_db == -3.0


def test_volume_never_goes_above_the_master() -> None:
    p = _player()
    p.change_volume(+3)
    assert p.volume_db == 0.0
    p.change_volume(-100)
    assert p.volume_db == VOLUME_MIN_DB
    p.toggle_mute()
    assert p.volume_db is None
    p.close()


def test_end_gently_in_the_last_section_stops_after_the_fade() -> None:
    p = _player(start=AtSection(1))
    _pull(p, 0.5)
    p.end_gently()
    heard = _pull(p, 5.0)
    p.close()
    assert p.finished.is_set()
    sounding = np.flatnonzero(heard[:, 0])
    assert END_FADE - PERIOD <= sounding[-1] <= END_FADE + PERIOD


@pytest.mark.slow
def test_a_cold_feed_never_plays_past_what_is_final(tmp_path: Path) -> None:
    script_path = write(
        tmp_path,
        "title: Cold\nmusic: {bed: drone, fade: 1s}\nsections:\n  - title: A\n    steps:\n"
        + "".join(f"      - say: Line {n} of a cold start.\n" for n in range(6)),
    )
    cache = tmp_path / "cache"
    options = Options(cache_dir=cache, loudness_lufs=None)
    script = load_script(script_path)
    speaker = open_speaker(options, Silent())
    feed = live_feed(script, speaker, options)
    try:
        first = feed.snapshot()
        assert not first.exact or first.final == first.timeline.total
        deadline = time.monotonic() + 60
        while not feed.snapshot().exact and time.monotonic() < deadline:
            feed.wait(0.1)
        final = feed.snapshot()
        assert final.exact
        # Everything the first snapshot called final is where the last one puts it.
        for event in first.timeline.events:
            if event.end <= first.final:
                assert event in final.timeline.events
    finally:
        feed.close()
    exact = build(script, speaker.length, file_length)
    assert exact.events == final.timeline.events


@pytest.mark.parametrize(
    ("typed", "keys"),
    [
        pytest.param(" ", [" "], id="space"),
        pytest.param("\x1b[C\x1b[D", ["right", "left"], id="arrows"),
        pytest.param("\x1bOC", ["right"], id="application-mode-arrow"),
        pytest.param("\x1b[5~\x1b[6~", ["pgup", "pgdn"], id="page-keys"),
        pytest.param("\x1b[15~z", ["z"], id="unknown-sequence-skipped"),
        pytest.param("nq", ["n", "q"], id="letters"),
    ],
)
def test_keys_are_read_as_terminals_send_them(typed: str, keys: list[str]) -> None:
    assert terminal.parse_keys(typed) == keys


def _one_step(tmp_path: Path, step: str) -> Timeline:
    script = write(tmp_path, f"title: T\nsections:\n  - title: A\n    steps:\n      - {step}\n")
    return session.timeline(script, Options(), Silent())


def test_pacer_grows_holds_and_shrinks(tmp_path: Path) -> None:
    timeline = _one_step(tmp_path, "breathe: {pattern: box, cycles: 1, cues: tone}")
    start = timeline.breaths[0].start
    at = [terminal.pacer(timeline, start + int(s * RATE)) for s in (0.1, 3.99, 6, 8.01, 13)]
    assert at[0].startswith("breathe in") and at[0].count("●") <= 1
    assert at[1].count("●") == terminal.PACER_WIDTH and at[1].endswith(" 1 s")
    assert at[2].startswith("hold") and at[2].count("●") == terminal.PACER_WIDTH
    assert at[3].startswith("breathe out") and at[3].count("●") == terminal.PACER_WIDTH
    assert at[4].startswith("hold") and at[4].count("●") == 0
    assert terminal.pacer(timeline, timeline.total - 1) == ""


def test_the_light_moves_side_to_side_with_the_sounds(tmp_path: Path) -> None:
    timeline = _one_step(tmp_path, "bilateral: {passes: 4, speed: 1.0}")
    [(start, end, passes)] = timeline.bilateral_sets()
    assert passes == 4 and end - start == 4 * RATE
    at = [terminal.light(timeline, start + int(s * RATE)) for s in (0.0, 0.5, 1.0, 2.0, 3.0)]
    dots = [line.index("●") - len("left  ") for line in at]
    width = terminal.LIGHT_WIDTH
    assert dots == [0, width // 2, width - 1, 0, width - 1]  # left, middle, right, ...
    assert terminal.light(timeline, end) == terminal.light(timeline, start - 1) == ""


def test_caption_follows_the_sentence_being_spoken(tmp_path: Path) -> None:
    timeline = _one_step(
        tmp_path, "say: Let the ground hold you. Notice your breath, without changing it."
    )
    first, *_, last = timeline.events
    assert terminal.caption(timeline, first.start + 10) == "Let the ground hold you."
    assert terminal.caption(timeline, first.end + 10) == ""  # the pause after a sentence
    second = "Notice your breath, without changing it."
    clause_pause = timeline.events[2].start - 10  # between "breath," and "without"
    assert terminal.caption(timeline, clause_pause) == second
    assert terminal.caption(timeline, last.end - 10) == second
    assert terminal.caption(timeline, last.end + RATE) == ""


def test_seeks_in_quick_succession_add_up() -> None:
    p = _player(30.0)
    _pull(p, 1.0)
    p.skip(10.0)
    p.wait_ready(PERIOD, 1.0)
    p.pull(PERIOD)  # the first seek's fade ends here; its place is not rendered yet
    p.skip(10.0)
    _pull(p, 0.5)
    p.close()
    expected = RATE + PAUSE_FADE + 10 * RATE + PAUSE_FADE + 10 * RATE
    assert abs(p.position - (expected + RATE // 2)) < RATE // 10
