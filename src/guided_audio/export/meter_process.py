"""The export's meter, a program of its own: measures what an encoder wrote, from stdin.

Called by `follow.Follower` (never by hand) as

    python -m guided_audio.export.meter_process FORMAT SKIP [TAKE]

with FORMAT `f32` (32-bit float stereo frames at the session rate, as an ffmpeg decoder
writes them) or `mp3` (LAME's stream, its Xing/LAME frame first, decoded here), and the
frames to measure: [SKIP, SKIP + TAKE), or from SKIP to the end without TAKE. It prints one
line of JSON on stdout, `[frames, energies, peak]`: the frames measured, their K-weighted
mean square per 100 ms (gated later, together with other parts'), and their true peak
(linear). It reads stdin to its end whatever it measures (the writer must not meet a
closed pipe), exits 0, or non-zero with the reason on stderr. It runs in a process of its
own so that the renderer keeps the interpreter to itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator

import numpy as np

from guided_audio import memory
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.dsp.loudness import PeakMeter
from guided_audio.export import mpeg

MEASURE_BLOCK = RATE * 10  # frames read and measured at a time


FLOAT_STDIN = "f32"
MP3_STDIN = "mp3"
FLOAT_FRAME_BYTES = CHANNELS * 4


def measure_stdin(skip: int = 0, take: int | None = None) -> None:
    """Frames, 100 ms loudness energies and true peak of frames [skip, skip + take) of
    32-bit float stereo on stdin, as JSON on stdout; the rest is read and let go (the
    decoder writing it must not meet a closed pipe)."""
    stdin = sys.stdin.buffer

    def blocks() -> Iterator[Audio]:
        while chunk := stdin.read(MEASURE_BLOCK * FLOAT_FRAME_BYTES):
            yield np.frombuffer(chunk, dtype=np.float32).reshape(-1, CHANNELS)

    _measure_frames(blocks(), skip, take)


def measure_mp3_stdin(skip: int = 0, take: int | None = None) -> None:
    """As measure_stdin, of LAME's MP3 stream on stdin (its Xing/LAME frame first), decoded
    here: no decoder process, and an eighth of the bytes through a pipe. Frame 0 is the
    first sample encoded, as ffmpeg gives it (the delays LAME records are skipped here)."""
    import miniaudio

    stdin = sys.stdin.buffer
    header = stdin.read(mpeg.HEADER_BYTES)
    length = mpeg.frame_length(header)
    if not length:
        _measure_frames(iter(()), 0, 0)
        return
    first = header + stdin.read(length - mpeg.HEADER_BYTES)
    delay = mpeg.lame_delay(first) + mpeg.DECODER_DELAY

    class Stream(miniaudio.StreamableSource):  # type: ignore[misc]
        """The stream as the decoder asks for it, from its first frame (the decoder knows
        the Xing frame for what it is: no audio)."""

        def __init__(self) -> None:
            self.head = first

        def read(self, num_bytes: int) -> bytes:
            out, self.head = self.head[:num_bytes], self.head[num_bytes:]
            return out + stdin.read(num_bytes - len(out))

    decoded = miniaudio.stream_any(
        Stream(),
        source_format=miniaudio.FileFormat.MP3,
        output_format=miniaudio.SampleFormat.FLOAT32,
        nchannels=CHANNELS,
        sample_rate=RATE,
        frames_to_read=MEASURE_BLOCK,
    )
    blocks = (np.frombuffer(chunk, dtype=np.float32).reshape(-1, CHANNELS) for chunk in decoded)
    _measure_frames(blocks, skip + delay, take)


def _measure_frames(blocks: Iterator[Audio], skip: int, take: int | None) -> None:
    """Print what measure_stdin prints, of frames [skip, skip + take) of `blocks`; the rest
    of stdin is read and let go (whatever writes it must not meet a closed pipe)."""
    memory.keep_freed_memory()
    meter, at = PeakMeter(), 0
    stop = None if take is None else skip + take
    for block in blocks:
        lo, hi = max(skip - at, 0), len(block) if stop is None else min(stop - at, len(block))
        if lo < hi:
            meter.feed(block[lo:hi])
        at += len(block)
        if stop is not None and at >= stop:
            break
    while sys.stdin.buffer.read(MEASURE_BLOCK * FLOAT_FRAME_BYTES):
        pass
    print(json.dumps([meter.frames, meter.energies().tolist(), meter.peak]))


MEASURES = {FLOAT_STDIN: measure_stdin, MP3_STDIN: measure_mp3_stdin}


def command(stream_format: str, skip: int = 0, take: int | None = None) -> list[str]:
    """The command line that runs this program on a stream of `stream_format`."""
    count = [] if take is None else [str(take)]
    return [sys.executable, "-m", __name__, stream_format, str(skip), *count]


def main(argv: list[str]) -> int:
    """Measure stdin as `argv` (FORMAT SKIP [TAKE]) says; 2 for arguments it cannot read."""
    if len(argv) not in (2, 3) or argv[0] not in MEASURES:
        print(f"usage: {__name__} {{{','.join(MEASURES)}}} SKIP [TAKE]", file=sys.stderr)
        return 2
    skip, take = int(argv[1]), int(argv[2]) if len(argv) == 3 else None
    MEASURES[argv[0]](skip, take)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
