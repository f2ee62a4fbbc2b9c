"""An MP3 encoded in parts at once (one per core) and joined must be one valid stream that
decodes as one encoding of the session would: same length, no seam heard, headers right."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

from conftest import cli, write
from guided_audio import session
from guided_audio.dsp import effects
from guided_audio.dsp.effects import RATE
from guided_audio.errors import GuidedAudioError
from guided_audio.export import meter_process, mpeg, parts
from guided_audio.export.encode import encoder_command
from guided_audio.export.follow import Measured, measure_file
from guided_audio.export.parts import (
    PART_GRID,
    PART_PREROLL_FRAMES,
    PART_TAIL_FRAMES,
    SEAM_WINDOW_FRAMES,
    encoding_parts,
)
from guided_audio.export.write import write_file
from guided_audio.play.devices import Clip
from guided_audio.session import Options, Silent

SECONDS = 45
PART_S = 12  # three parts of 45 s


def _session() -> NDArray[np.float32]:
    """Speech-like tones and noise, a stretch of digital silence and clicks (the encoder
    switches to short blocks on them): what a join must survive."""
    rng = np.random.default_rng(7)
    t = np.arange(SECONDS * RATE) / RATE
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 3.1 * t) ** 2
    voice = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((180, 360, 540, 1500), 1))
    audio = 0.2 * syllables * voice + 0.02 * rng.standard_normal(len(t))
    audio[int(20 * RATE) : int(24 * RATE)] = 0.0
    for at in np.arange(1.0, SECONDS, 1.7):  # clicks everywhere, near the joins too
        audio[int(at * RATE) : int(at * RATE) + 40] += 0.6
    stereo = np.stack([audio, 0.8 * audio], axis=1)
    return np.clip(stereo, -0.99, 0.99).astype(np.float32)


def _pcm(path: Path) -> NDArray[np.float32]:
    done = subprocess.run(
        ["ffmpeg", "-v", "error", "-xerror", "-err_detect", "explode", "-i", str(path),
         "-f", "f32le", "-ac", "2", "pipe:1"],
        capture_output=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0 and not done.stderr, done.stderr.decode()
    return np.frombuffer(done.stdout, dtype=np.float32).reshape(-1, 2)


def _snr_db(decoded: NDArray[np.float32], source: NDArray[np.float32]) -> float:
    error = decoded.astype(np.float64) - source
    return float(10 * np.log10(np.sum(source.astype(np.float64) ** 2) / np.sum(error**2)))


@pytest.fixture(scope="module")
def encoded(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Measured]]:
    folder = tmp_path_factory.mktemp("joined")
    source = _session()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(parts, "MIN_PART_S", PART_S)
        return {
            n: (out, write_file(out, Clip(source), encoders=n))
            for n in (1, 2, 3)
            for out in [folder / f"{n}.mp3"]
        }


def test_parts_start_on_both_grids_and_share_the_session_out() -> None:
    total = 30 * 60 * RATE + 12345
    parts = encoding_parts(total, 4)
    assert len(parts) == 4
    assert parts[0].start == 0 and parts[-1].stop == total
    for part in parts:
        assert part.start % mpeg.SAMPLES_PER_FRAME == 0 and part.start % (RATE // 10) == 0
    for before, after in itertools.pairwise(parts):
        assert before.own_stop == after.own_start  # the meters split the session, no more
        first, stop = after.seam_window()
        # the earlier part is encoded past the window, the later one from before it
        assert before.stop >= (stop + PART_TAIL_FRAMES) * mpeg.SAMPLES_PER_FRAME
        assert after.start <= (first - PART_PREROLL_FRAMES) * mpeg.SAMPLES_PER_FRAME
    assert encoding_parts(90 * RATE, 4) == encoding_parts(90 * RATE, 1)[:1] * 1


PREROLL_AND_WINDOW = (PART_PREROLL_FRAMES + SEAM_WINDOW_FRAMES) * mpeg.SAMPLES_PER_FRAME


def test_a_part_starts_where_only_the_bed_sounds_when_that_is_near() -> None:
    total = 20 * 60 * RATE
    plain = encoding_parts(total, 2)
    middle = plain[1].start
    quiet = [(middle - 90 * RATE, middle - 80 * RATE), (middle + 30 * RATE, middle + 50 * RATE)]
    moved = encoding_parts(total, 2, quiet)
    start = moved[1].start
    assert start % PART_GRID == 0
    assert quiet[1][0] <= start and start + PREROLL_AND_WINDOW <= quiet[1][1]  # nearer, whole
    assert moved[0].stop - start == plain[0].stop - middle  # the same overlap, moved
    far = [(middle + 4 * 60 * RATE, middle + 5 * 60 * RATE)]  # beyond a quarter of a share
    assert encoding_parts(total, 2, far) == plain


JOIN_IN_SPEECH = """\
title: Joined in speech
music: {bed: drone, level: -22dB}
sections:
  - title: One
    steps:
      - say: Notice the places where your body meets the ground, and let them hold you.
      - say: Let your shoulders soften, and let your jaw release a little more.
      - say: There is nothing you need to do right now, nothing to fix or change.
      - say: Feel the breath moving in, and moving out, at its own pace.
      - say: If your attention wanders, gently bring it back to the breath.
      - say: You can rest here for as long as you need, and come back when ready.
      - pause: 40s
      - say: Notice the weight of your hands, resting where they are.
"""


@pytest.mark.slow
def test_a_session_is_joined_where_only_the_bed_sounds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An even split falls in speech here, where the encoders may find no frame to join at
    # (and the session is encoded again in one part): the join moves into the pause.
    monkeypatch.setattr(parts, "MIN_PART_S", 20)
    monkeypatch.setenv("GUIDED_AUDIO_JOBS", "2")
    joins: list[int] = []
    seam = mpeg.seam

    def spied(before: mpeg.Part, after: mpeg.Part, first: int, stop: int) -> int:
        joins.append(seam(before, after, first, stop))
        return joins[-1]

    monkeypatch.setattr(mpeg, "seam", spied)
    script = write(tmp_path, JOIN_IN_SPEECH)
    timeline = session.timeline(script, Options(), Silent())
    quiet = timeline.quiet_spans()
    middle = encoding_parts(timeline.total, 2)[1].start  # the even split
    assert not any(begin <= middle < end for begin, end in quiet), "the split is in speech"
    result = cli("export", str(script), "-o", str(tmp_path / "out.mp3"), "-q")
    assert result.exit_code == 0, result.output
    assert len(joins) == 1
    joined = joins[0] * mpeg.SAMPLES_PER_FRAME
    (pause,) = [(begin, end) for begin, end in quiet if end - begin >= PREROLL_AND_WINDOW]
    assert pause[0] <= joined and joined + mpeg.SAMPLES_PER_FRAME <= pause[1]


@pytest.mark.parametrize("parts", [pytest.param(2, id="two-parts"), pytest.param(3, id="three")])
@pytest.mark.slow
def test_joined_parts_decode_as_one_encoding(
    encoded: dict[int, tuple[Path, Measured]], parts: int
) -> None:
    source = _session()
    whole, joined = _pcm(encoded[1][0]), _pcm(encoded[parts][0])
    assert len(joined) == len(whole) == len(source)  # gapless: delay and padding right
    assert _snr_db(joined, source) >= _snr_db(whole, source) - 0.5
    # around each join, no worse than one encoding there
    for part in encoding_parts(len(source), parts)[1:]:
        first, stop = part.seam_window()
        lo, hi = (first - 2) * mpeg.SAMPLES_PER_FRAME, (stop + 2) * mpeg.SAMPLES_PER_FRAME
        assert _snr_db(joined[lo:hi], source[lo:hi]) >= _snr_db(whole[lo:hi], source[lo:hi]) - 1


@pytest.mark.parametrize("parts", [pytest.param(2, id="two-parts"), pytest.param(3, id="three")])
def test_joined_headers_count_frames_bytes_and_crcs(
    encoded: dict[int, tuple[Path, Measured]], parts: int
) -> None:
    from mutagen.mp3 import MP3

    path = encoded[parts][0]
    stream = path.read_bytes()
    tag_size = sum(byte << 7 * (3 - i) for i, byte in enumerate(stream[6:10]))  # synchsafe
    stream = stream[10 + tag_size :]
    bare = path.with_suffix(".bare")
    bare.write_bytes(stream)
    walked = mpeg.read_part(bare, 0)
    xing = walked.xing
    at = xing.find(b"Xing")
    assert int.from_bytes(xing[at + 8 : at + 12], "big") == walked.frames
    assert int.from_bytes(xing[at + 12 : at + 16], "big") == len(stream)
    toc = list(xing[at + 16 : at + 116])
    assert toc == sorted(toc) and toc[0] == 0
    assert walked.music_crc == mpeg.crc16(stream[walked.offsets[1] :])
    assert int.from_bytes(xing[at + 154 : at + 156], "big") == mpeg.crc16(xing[: at + 154])
    info = MP3(path).info
    assert info is not None
    assert abs(info.length - SECONDS) <= 2 * mpeg.SAMPLES_PER_FRAME / RATE


def test_joined_report_is_that_of_one_encoding(
    encoded: dict[int, tuple[Path, Measured]],
) -> None:
    seconds, lufs, peak = encoded[1][1]
    for n in (2, 3):
        joined_seconds, joined_lufs, joined_peak = encoded[n][1]
        assert joined_seconds == seconds
        assert abs(joined_lufs - lufs) <= 0.02
        assert abs(joined_peak - peak) <= 0.1
        measured_lufs = measure_file(encoded[n][0])[1]
        assert abs(joined_lufs - measured_lufs) <= 0.02


def test_the_meter_decodes_an_mp3_on_the_grid_ffmpeg_decodes_it_on(tmp_path: Path) -> None:
    # The report's meter decodes an MP3 itself, with a decoder that leaves LAME's delays in;
    # its 100 ms steps must fall where ffmpeg's (which takes them out) fall: a burst from
    # exactly 1.0 to 2.0 s fills steps 10-19 and no other (a step late: 9 and 20 fill too).
    audio = np.zeros((3 * RATE, 2), dtype=np.float32)
    t = np.arange(RATE) / RATE
    audio[RATE : 2 * RATE] = 0.3 * np.sin(2 * np.pi * 1000 * t)[:, None]
    stream = tmp_path / "burst.mp3"
    subprocess.run(
        encoder_command(stream, ".mp3"), input=effects.to_int16(audio).tobytes(),
        check=True,
    )  # fmt: skip

    def measured(mode: str, data: bytes) -> NDArray[np.float64]:
        meter = meter_process.command(mode)
        done = subprocess.run(meter, input=data, capture_output=True, check=True)
        return np.array(json.loads(done.stdout)[1])

    ours = measured(meter_process.MP3_STDIN, stream.read_bytes())
    theirs = measured(meter_process.FLOAT_STDIN, _pcm(stream).tobytes())
    assert len(ours) >= len(theirs) >= 29  # the last step waits for the filter's next block
    np.testing.assert_allclose(ours[: len(theirs)], theirs, rtol=1e-3, atol=1e-9)
    assert ours[10:20].min() > 1e3 * max(ours[9], ours[20])


@pytest.mark.slow
def test_with_no_clean_frame_to_join_at_it_is_encoded_in_one_part(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_seam(*_: object) -> int:
        raise mpeg.CannotJoin("none")

    monkeypatch.setattr(parts, "MIN_PART_S", PART_S)
    monkeypatch.setattr(mpeg, "seam", no_seam)
    out = tmp_path / "fallback.mp3"
    write_file(out, Clip(_session()), encoders=3)
    assert len(_pcm(out)) == SECONDS * RATE
    assert sorted(os.listdir(tmp_path)) == ["fallback.mp3"]  # no part left behind


def test_a_file_that_is_not_mp3_frames_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "noise.mp3"
    path.write_bytes(b"\xff\xfb" + bytes(range(256)) * 8)
    with pytest.raises(GuidedAudioError, match="other than MP3 frames"):
        mpeg.read_part(path, 0)


@pytest.mark.parametrize(("head", "tail"), [(0, 5), (1000, 1), (3, 70000), (65536, 333)])
def test_crcs_of_pieces_make_the_crc_of_the_whole(head: int, tail: int) -> None:
    data = np.random.default_rng(head + tail).integers(0, 256, head + tail, dtype=np.uint8)
    first, second = data[:head].tobytes(), data[head:].tobytes()
    whole = mpeg.crc16(first + second)
    assert mpeg.crc16_joined(mpeg.crc16(first), mpeg.crc16(second), tail) == whole
    assert mpeg.crc16_before(whole, mpeg.crc16(second), tail) == mpeg.crc16(first)
