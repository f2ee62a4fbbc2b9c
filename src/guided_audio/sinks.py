"""Stage 5: where the audio goes. Files are written to a temp file and renamed; the
speakers get the same 16-bit samples a WAV export holds, chunk by chunk.
"""

from __future__ import annotations

import bisect
import ctypes
import ctypes.util
import errno
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import wave
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import numpy as np
from numpy.typing import NDArray

from guided_audio import effects, id3, memory, mpeg
from guided_audio.effects import CHANNELS, RATE, Audio
from guided_audio.errors import AudioDeviceError, GuidedAudioError, UsageError
from guided_audio.files import signals_deferred, temp_beside
from guided_audio.mix import BLOCK, PeakMeter, Windowed, gated_loudness, loudness_and_peak

# suffix -> ffmpeg's encoder arguments, and the container's (WAV is written directly)
ENCODERS: dict[str, list[str]] = {
    ".mp3": ["-c:a", "libmp3lame", "-q:a", "2"],
    ".flac": ["-c:a", "flac"],
    ".ogg": ["-c:a", "libvorbis", "-q:a", "5"],
    ".opus": ["-c:a", "libopus", "-b:a", "96k"],
    # AAC in an iPod-style MP4: Apple's players take chapters and the cover from it.
    ".m4a": ["-c:a", "aac", "-b:a", "128k"],
    ".m4b": ["-c:a", "aac", "-b:a", "128k"],
}
# The encoder writes a bare stream; tags, chapters and the cover are added in a copy after
# it: with an ffmetadata file as a second input, ffmpeg 5.1 spent a fifth to a third more
# time encoding the same samples from a pipe.
MUXERS = {".mp3": "mp3", ".flac": "flac", ".ogg": "ogg", ".opus": "opus", ".m4a": "ipod",
          ".m4b": "ipod"}  # fmt: skip
# The MP3 stream is written bare and its tag put before it here (id3.py): no second ffmpeg.
STREAM_OPTIONS: dict[str, list[str]] = {".mp3": ["-id3v2_version", "0"]}
COPY_BYTES = 1 << 20
MUXER_OPTIONS: dict[str, list[str]] = {
    ".m4a": ["-movflags", "+faststart"],
    ".m4b": ["-movflags", "+faststart"],
}
FORMATS = (".wav", *ENCODERS)
COVER_FORMATS = (".mp3", ".flac", ".m4a", ".m4b")  # ffmpeg's Ogg muxers cannot carry one


@dataclass(frozen=True)
class Chapter:
    title: str
    start: int  # samples
    end: int


@dataclass(frozen=True)
class Metadata:
    """Tags (ffmpeg's names: title, artist, album, comment, date, genre), chapters, a cover."""

    tags: Mapping[str, str] = field(default_factory=dict)
    chapters: tuple[Chapter, ...] = ()
    cover: Path | None = None


def _ffmetadata_text(value: str) -> str:
    return re.sub(r"([=;#\\\n])", r"\\\1", value)


VORBIS_COMMENT_FORMATS = (".flac", ".ogg", ".opus")


def _chapter_time(samples: int) -> str:
    millis = round(samples * 1000 / RATE)
    seconds, millis = divmod(millis, 1000)
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}.{millis:03d}"


def ffmetadata(metadata: Metadata, suffix: str) -> str:
    """ffmpeg's metadata file: the tags, and a chapter per section. MP4 gets [CHAPTER]
    entries in exact samples; FLAC and Ogg get
    the CHAPTERnnn / CHAPTERnnnNAME comments players read (ffmpeg writes no others there)."""
    tags = dict(metadata.tags)
    if suffix in VORBIS_COMMENT_FORMATS:
        for number, chapter in enumerate(metadata.chapters, start=1):
            tags[f"CHAPTER{number:03d}"] = _chapter_time(chapter.start)
            tags[f"CHAPTER{number:03d}NAME"] = chapter.title
    lines = [";FFMETADATA1"]
    lines += [f"{key}={_ffmetadata_text(value)}" for key, value in tags.items()]
    if suffix not in VORBIS_COMMENT_FORMATS:
        for chapter in metadata.chapters:
            lines += [
                "[CHAPTER]",
                f"TIMEBASE=1/{RATE}",
                f"START={chapter.start}",
                f"END={chapter.end}",
                f"title={_ffmetadata_text(chapter.title)}",
            ]
    return "\n".join(lines) + "\n"


def check_output(path: Path, force: bool) -> None:
    """Refuse a bad output path before any work is done (creates nothing)."""
    if path.suffix.lower() not in FORMATS:
        raise UsageError(f"{path}: unknown format '{path.suffix}'; use one of {', '.join(FORMATS)}")
    if path.is_dir():
        raise UsageError(f"{path} is a directory; give a file name like {path / 'session.mp3'}")
    if path.exists() and not force:
        raise UsageError(f"{path} already exists; use --force to overwrite it")
    if path.suffix.lower() != ".wav" and ffmpeg() is None:
        raise GuidedAudioError(
            f"writing {path.suffix} needs ffmpeg (apt-get install ffmpeg); or export to .wav"
        )
    existing = path.parent
    while not existing.exists():  # a missing folder is made later, once rendering succeeded
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK):
        raise UsageError(f"cannot write to the folder {existing}")


def make_folder(path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the folder {path.parent}: {exc.strerror}") from None


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


@contextmanager
def atomic_path(path: Path, exclusive: bool = False) -> Iterator[Path]:
    """A temp path beside `path`, renamed over it on success and removed on any failure
    (`exclusive`: linked into place, so an existing file is never replaced)."""
    try:
        with temp_beside(path, ".partial") as temp:
            yield temp
            umask = os.umask(0)
            os.umask(umask)
            temp.chmod(0o666 & ~umask)  # exports are for sharing: the usual permissions
            if exclusive:
                os.link(temp, path)
            else:
                os.replace(temp, path)
    except FileExistsError:
        raise UsageError(f"{path} already exists; nothing was written") from None
    except OSError as exc:
        raise write_error(path, exc) from exc


def write_error(path: Path, exc: OSError) -> GuidedAudioError:
    """One line for a file that could not be written, naming the cause and the way out."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return GuidedAudioError(
            f"{path} was not written: the disk holding {path.parent} is full; "
            "free some space there or export elsewhere with -o"
        )
    return GuidedAudioError(
        f"{path} was not written: {exc.strerror or exc}; export elsewhere with -o"
    )


Measured = tuple[float, float, float]  # seconds, integrated loudness (LUFS), true peak (dBTP)


def write_file(
    path: Path,
    source: Windowed,
    metadata: Metadata = Metadata(),
    progress: Callable[[int], None] = lambda _: None,
    encoders: int = 1,
) -> Measured:
    """Encode the whole session into `path` (format from its suffix), atomically, and measure
    what was written: decoded back while it is written where the format streams (a WAV is
    measured as its samples are written), else read back afterwards. An MP3 of some length
    is encoded in up to `encoders` parts at once (one per core), joined as one stream."""
    memory.keep_freed_memory()  # from here on, blocks of the same sizes come and go
    make_folder(path)
    suffix = path.suffix.lower()
    with atomic_path(path) as temp:
        if suffix == ".wav":
            with wave.open(str(temp), "wb") as wav:
                wav.setnchannels(CHANNELS)
                wav.setsampwidth(2)
                wav.setframerate(RATE)
                measured = _measured(loudness_and_peak(_written_wav(wav, source, progress)))
            return measured
        parts = encoding_parts(
            source.total, encoders if suffix == ".mp3" else 1, source.quiet_spans()
        )
        try:
            followed = _encode_parts(path, temp, suffix, source, metadata, progress, parts)
        except mpeg.CannotJoin:  # rare (no clean frame near a join): one part, as ever
            parts = encoding_parts(source.total, 1)
            followed = _encode_parts(path, temp, suffix, source, metadata, progress, parts)
        if followed is None:
            followed = loudness_and_peak(_decoded_blocks(temp, suffix))
        # The length is the plan's: a stream decoded as it grows keeps the encoder's delay.
        measured = _measured((source.total, *followed[1:]))
    return measured


def _encode_parts(
    path: Path,
    temp: Path,
    suffix: str,
    source: Windowed,
    metadata: Metadata,
    progress: Callable[[int], None],
    parts: list[EncodingPart],
) -> tuple[int, float, float] | None:
    with ExitStack() as stack:
        streams = [stack.enter_context(temp_beside(path, ".stream")) for _ in parts]
        followed = _encode(streams, suffix, source, parts, progress)
        _package(streams, parts, temp, suffix, metadata, source.total)
    return followed


# An MP3 is encoded in parts at once (LAME uses one core), joined by mpeg.join.
PART_GRID = 282_240  # samples: whole frames (1152) and whole meter steps (4410)
MIN_PART_S = 60  # a shorter session is encoded in one part
PART_PREROLL_FRAMES = 40  # ~1 s a part's encoder runs before it may join the last one
SEAM_WINDOW_FRAMES = 160  # ~4 s of frames in which the join is looked for
PART_TAIL_FRAMES = 40  # the earlier part runs on past them: its last frames are an ending
METER_SETTLE = RATE  # a part's meter takes over a second in (its K-weighting settles first)


@dataclass(frozen=True)
class EncodingPart:
    """Samples [start, stop) go to one encoder; it counts for [own_start, own_stop) (the
    meters split there, and progress); the join is looked for in frames [seam_window)."""

    start: int
    stop: int
    own_start: int
    own_stop: int

    def seam_window(self) -> tuple[int, int]:
        """Frames (of the session) where this part may take over from the one before."""
        first = self.start // mpeg.SAMPLES_PER_FRAME + PART_PREROLL_FRAMES
        return first, first + SEAM_WINDOW_FRAMES


def encoding_parts(
    total: int, encoders: int, quiet: Sequence[tuple[int, int]] = ()
) -> list[EncodingPart]:
    """`encoders` parts of about equal length, starting on PART_GRID (fewer for a short
    session); each overlaps the next by the next one's preroll, window and tail.

    A part starts, where it can, in a stretch of `quiet` (nothing but a bed sounds) near its
    equal share: there both encoders keep long blocks and settle on the same bits, so a
    frame to join at is found at once. Speech at a join can leave none in the window, and
    the session is then encoded again in one part (twice the time)."""
    count = max(1, min(encoders, total // (MIN_PART_S * RATE)))
    starts = sorted({_part_start(i * total / count, total / count, quiet) for i in range(count)})
    overlap = (PART_PREROLL_FRAMES + SEAM_WINDOW_FRAMES + PART_TAIL_FRAMES) * mpeg.SAMPLES_PER_FRAME
    owns = [0, *(start + METER_SETTLE for start in starts[1:]), total]
    ends = [*(start + overlap for start in starts[1:]), total]
    return [
        EncodingPart(start, min(end, total), owns[i], owns[i + 1])
        for i, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]


PART_SHIFT_MAX = 0.25  # of a part's share: how far a start may move to find quiet


def _part_start(share_start: float, share: float, quiet: Sequence[tuple[int, int]]) -> int:
    """The PART_GRID point near `share_start` (0 stays 0) whose preroll and seam window
    hold the longest stretch of `quiet` (a pause, not the gaps between lines); of equals,
    the nearest."""
    nearest = round(share_start / PART_GRID)
    if nearest == 0:
        return 0
    reach = int(share * PART_SHIFT_MAX // PART_GRID)
    span = (PART_PREROLL_FRAMES + SEAM_WINDOW_FRAMES) * mpeg.SAMPLES_PER_FRAME

    ends = [end for _, end in quiet]

    def quiet_in(start: int) -> int:
        """The longest quiet stretch in [start, start + span): only the spans that reach
        into it are looked at (a long session has hundreds, and many candidates)."""
        longest, index = 0, bisect.bisect_right(ends, start)
        while index < len(quiet) and quiet[index][0] < start + span:
            begin, end = quiet[index]
            longest = max(longest, min(end, start + span) - max(begin, start))
            index += 1
        return longest

    candidates = range(max(1, nearest - reach), nearest + reach + 1)
    best = max(
        candidates, key=lambda k: (quiet_in(k * PART_GRID), -abs(k * PART_GRID - share_start))
    )
    return best * PART_GRID


def _written_wav(
    wav: wave.Wave_write, source: Windowed, progress: Callable[[int], None]
) -> Iterator[Audio]:
    """Each block as the file holds it (16-bit), after writing it."""
    for block in source.blocks():
        pcm = effects.to_int16(block)
        wav.writeframes(pcm.tobytes())
        progress(len(block))
        yield effects.from_int16(pcm)


def _measured(frames_lufs_peak: tuple[int, float, float]) -> Measured:
    frames, lufs, peak = frames_lufs_peak
    true_peak = 20 * np.log10(peak) if peak > 0 else float("-inf")
    return frames / RATE, lufs, float(true_peak)


def write_text(path: Path, text: str, exclusive: bool = False) -> None:
    """A small file beside an export, atomically and with the usual permissions;
    `exclusive`: never replace an existing file (even one that appears meanwhile)."""
    make_folder(path)
    with atomic_path(path, exclusive) as temp:
        temp.write_text(text, encoding="utf-8")


MEASURE_BLOCK = RATE * 10
# Formats a decoder reads while they grow (suffix -> demuxer); MP4 puts its index at the end.
FOLLOWED = {".mp3": "mp3", ".flac": "flac", ".ogg": "ogg", ".opus": "ogg"}
FOLLOW_POLL_S = 0.02


def measure_file(
    path: Path, progress: Callable[[int], None] = lambda _: None
) -> tuple[float, float, float]:
    """Length (s), integrated loudness (LUFS) and true peak (dBTP) of an audio file, decoded
    back by ffmpeg as floats (so overs past full scale show) and measured block by block;
    our own WAV files are read directly (no ffmpeg needed)."""
    return _measured(loudness_and_peak(_decoded_blocks(path, path.suffix.lower()), progress))


def _decoder(source: str, demuxer: str | None = None) -> subprocess.Popen[bytes]:
    """ffmpeg decoding `source` (a path, or pipe:0) to 32-bit float frames on its stdout."""
    command = [ffmpeg() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin"]
    command += ["-f", demuxer] if demuxer else []
    command += [
        "-i", source, "-map", "0:a", "-f", "f32le", "-ac", str(CHANNELS), "-ar", str(RATE),
        "pipe:1",
    ]  # fmt: skip
    stdin = subprocess.PIPE if source == "pipe:0" else subprocess.DEVNULL
    return subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _float_blocks(process: subprocess.Popen[bytes], path: Path) -> Iterator[Audio]:
    stdout = process.stdout
    assert stdout is not None
    while chunk := stdout.read(MEASURE_BLOCK * CHANNELS * 4):
        yield np.frombuffer(chunk, dtype=np.float32).reshape(-1, CHANNELS)
    error = process.stderr.read().decode(errors="replace").strip() if process.stderr else ""
    if process.wait() != 0:
        raise GuidedAudioError(f"cannot read back {path} to measure it: {error}")


def _decoded_blocks(path: Path, suffix: str) -> Iterator[Audio]:
    if suffix == ".wav":
        with wave.open(str(path), "rb") as wav:
            while data := wav.readframes(MEASURE_BLOCK):
                pcm = np.frombuffer(data, dtype=np.int16).reshape(-1, CHANNELS)
                yield effects.from_int16(pcm)
        return
    with _decoder(str(path)) as process:
        yield from _float_blocks(process, path)


FOLLOWER_NICENESS = 10


def _yield_to_encoder(pid: int) -> None:
    """Lower a helper's priority: with three busy processes on two cores the scheduler would
    give each two thirds of a core, and the encoder (the one that cannot wait) would slow.
    The helpers have slack: they run in the encoder's gaps and finish just after it."""
    with suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, pid, FOLLOWER_NICENESS)


class Follower:
    """Decodes a file while ffmpeg writes it, and measures it in a process of its own (the
    renderer keeps the interpreter to itself): the report a therapist reads comes from the
    written bytes, at no pass of its own. An MP3 is decoded by the meter itself."""

    def __init__(
        self,
        path: Path,
        suffix: str,
        writer: subprocess.Popen[bytes],
        skip: int = 0,
        take: int | None = None,
    ) -> None:
        """Measures frames [skip, skip + take) of the decoded file (to its end: take None)."""
        self.path, self.writer = path, writer
        self.decoder = None if suffix == ".mp3" else _decoder("pipe:0", FOLLOWED[suffix])
        mode = MEASURE_MP3_STDIN if self.decoder is None else MEASURE_STDIN
        self.meter = subprocess.Popen(
            [sys.executable, "-m", "guided_audio.sinks", mode, str(skip), str(take)],
            stdin=subprocess.PIPE if self.decoder is None else self.decoder.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        helpers = [self.meter]
        # What the tail writes (and closes): the decoder's stdin, or the meter's own, taken
        # from its Popen so that communicate() leaves it to the tail.
        self._sink = (self.meter if self.decoder is None else self.decoder).stdin
        self.meter.stdin = None
        if self.decoder is not None:
            assert self.decoder.stdout is not None
            _widen_pipe(self.decoder.stdout.fileno())
            self.decoder.stdout.close()  # the meter reads it now
            helpers.append(self.decoder)
        for helper in helpers:
            _yield_to_encoder(helper.pid)
        self._tail_thread = threading.Thread(target=self._tail, name="follow-file", daemon=True)
        self._tail_thread.start()

    def _tail(self) -> None:
        stdin = self._sink
        assert stdin is not None
        try:
            while not self.path.exists() and self.writer.poll() is None:
                time.sleep(FOLLOW_POLL_S)
            with self.path.open("rb") as grown:
                while True:
                    done = self.writer.poll() is not None  # before reading: then nothing is missed
                    chunk = grown.read(PIPE_BYTES)
                    if chunk:
                        stdin.write(chunk)
                    elif done:
                        break
                    else:
                        time.sleep(FOLLOW_POLL_S)
        except OSError:
            pass  # the decoder stopped (its error is reported) or the file never came
        finally:
            with suppress(OSError):
                stdin.close()

    def stop(self) -> None:
        if self.decoder is not None:
            self.decoder.kill()
        self.meter.kill()
        self.finish_quietly()

    def finish_quietly(self) -> tuple[bytes, bytes, bytes]:
        self._tail_thread.join()
        measured, failed = self.meter.communicate()
        if self.decoder is None:
            return measured, failed, b""
        stderr = self.decoder.stderr
        assert stderr is not None
        with stderr:
            decoder_failed = stderr.read()
        self.decoder.wait()
        return measured, failed, decoder_failed

    def finish(self) -> Followed:
        measured, failed, decoder_failed = self.finish_quietly()
        decoder_ok = self.decoder is None or self.decoder.returncode == 0
        if not decoder_ok or self.meter.returncode != 0:
            detail = (decoder_failed or failed).decode(errors="replace").strip()
            raise GuidedAudioError(f"cannot read back {self.path} to measure it: {detail}")
        frames, energies, peak = json.loads(measured)
        return Followed(int(frames), np.array(energies, dtype=np.float64), float(peak))


class Followed(NamedTuple):
    frames: int
    energies: NDArray[np.float64]  # K-weighted mean square per METER_STEP (gated later)
    peak: float  # linear


MEASURE_STDIN = "--measure-stdin"
MEASURE_MP3_STDIN = "--measure-mp3-stdin"
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


PIPE_BYTES = 1 << 20  # a pipe of 64 KiB wakes ffmpeg and the writer every 0.4 ms of audio


def _widen_pipe(fd: int) -> None:
    """Let a pipe hold more (Linux; elsewhere, or past the user's limit, it stays as it is)."""
    with suppress(OSError, AttributeError):
        import fcntl

        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, PIPE_BYTES)


def _encoder_command(stream: Path, suffix: str) -> list[str]:
    return [
        ffmpeg() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "s16le", "-ar", str(RATE), "-ac", str(CHANNELS), "-i", "pipe:0",
        "-map_metadata", "-1", *ENCODERS[suffix], *STREAM_OPTIONS.get(suffix, []),
        "-f", MUXERS[suffix], str(stream),
    ]  # fmt: skip


def _encode(
    streams: list[Path],
    suffix: str,
    source: Windowed,
    parts: list[EncodingPart],
    progress: Callable[[int], None],
) -> tuple[int, float, float] | None:
    """Feed each part of the session to an ffmpeg of its own, which writes its bare
    encoded stream; frames, loudness and true peak of what they wrote when the format could
    be followed as it grew (else None: it is measured afterwards)."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for stream in streams:
            with signals_deferred():  # started and in hand (killed below if need be), or not
                processes.append(
                    subprocess.Popen(
                        _encoder_command(stream, suffix),
                        stdin=subprocess.PIPE,
                        stderr=subprocess.PIPE,
                    )
                )
        return _feed_encoders(processes, streams, suffix, source, parts, progress)
    except BaseException:
        # On Ctrl-C, Popen's exit gives the child a quarter second and leaves it running:
        # ffmpeg would then write the stream again after its cleanup.
        for process in processes:
            process.kill()
            process.wait()
        raise
    finally:
        for process in processes:
            for pipe in (process.stdin, process.stderr):
                if pipe is not None:
                    with suppress(OSError):
                        pipe.close()


class _Feed:
    """A writer thread feeding one encoder while the next block renders: the renderer and
    the encoders keep every core busy."""

    def __init__(self, process: subprocess.Popen[bytes], part: EncodingPart) -> None:
        assert process.stdin is not None
        self.stdin, self.part, self.cursor = process.stdin, part, part.start
        _widen_pipe(self.stdin.fileno())
        self.queue: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
        self.broken: list[OSError] = []
        self.thread = threading.Thread(target=self._pump, name="ffmpeg-feed", daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        try:
            while (chunk := self.queue.get()) is not None:
                self.stdin.write(chunk)
            self.stdin.close()
        except OSError as exc:  # ffmpeg stopped reading
            self.broken.append(exc)
            while self.queue.get() is not None:  # drain, so the renderer never blocks
                pass

    @property
    def done(self) -> bool:
        return self.cursor >= self.part.stop or bool(self.broken)

    def feed(self, source: Windowed, progress: Callable[[int], None]) -> None:
        start, stop = self.cursor, min(self.cursor + BLOCK, self.part.stop)
        self.queue.put(effects.to_int16(source.render(start, stop)).tobytes())
        self.cursor = stop
        counted = min(stop, self.part.own_stop) - max(start, self.part.own_start)
        if counted > 0:
            progress(counted)

    def end(self) -> None:
        self.queue.put(None)
        self.thread.join()


def _feed_encoders(
    processes: list[subprocess.Popen[bytes]],
    streams: list[Path],
    suffix: str,
    source: Windowed,
    parts: list[EncodingPart],
    progress: Callable[[int], None],
) -> tuple[int, float, float] | None:
    """The blocks into started ffmpegs (see _encode, which ends them however this ends)."""
    feeds = [_Feed(process, part) for process, part in zip(processes, parts, strict=True)]
    followers: list[Follower] = []
    try:
        if suffix in FOLLOWED:
            for stream, process, part in zip(streams, processes, parts, strict=True):
                # A part's meter takes its own samples (the last one's, to its end: decoded
                # as it grows, a stream keeps its encoder's delay).
                skip = part.own_start - part.start
                take = None if part is parts[-1] else part.own_stop - part.own_start
                followers.append(Follower(stream, suffix, process, skip, take))
        while waiting := [feed for feed in feeds if not feed.done]:
            # the emptiest queue first: no encoder waits while another's queue is full
            min(waiting, key=lambda feed: feed.queue.qsize()).feed(source, progress)
    except BaseException:
        for process in processes:
            process.kill()  # unblocks the writers, which then drain
        for follower in followers:
            follower.stop()
        raise
    finally:
        for feed in feeds:
            feed.end()
    errors = []
    for process in processes:
        assert process.stderr is not None
        errors.append(process.stderr.read().decode(errors="replace").strip())
    broken = [exc for feed in feeds for exc in feed.broken]
    if any(process.wait() != 0 for process in processes) or broken:
        for follower in followers:
            follower.stop()
        _raise_ffmpeg_error(suffix, "; ".join(e for e in errors if e) or str(broken[0]))
    if not followers:
        return None
    measured = [follower.finish() for follower in followers]
    energies = np.concatenate([m.energies for m in measured])
    return (
        sum(m.frames for m in measured),
        gated_loudness(energies),
        max(m.peak for m in measured),
    )


def _package(
    streams: list[Path],
    parts: list[EncodingPart],
    temp: Path,
    suffix: str,
    metadata: Metadata,
    total: int,
) -> None:
    """The encoded stream, copied as it is into its container with the tags, chapters and
    cover (a fraction of a second: no sample is decoded)."""
    if suffix == ".mp3":
        _tag_mp3(streams, parts, temp, metadata, total)
        return
    (stream,) = streams
    with tempfile.TemporaryDirectory(prefix="guided-audio-") as folder:
        described = Path(folder) / "metadata.txt"  # a private folder (0700)
        described.write_text(ffmetadata(metadata, suffix), encoding="utf-8")
        command = [
            ffmpeg() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
            "-i", str(stream), "-f", "ffmetadata", "-i", str(described),
        ]  # fmt: skip
        maps = ["-map", "0:a", "-c:a", "copy", "-map_metadata", "1", "-map_chapters", "1"]
        if metadata.cover is not None and suffix in COVER_FORMATS:
            command += ["-i", str(metadata.cover)]
            maps += ["-map", "2:v", "-c:v", "copy", "-disposition:v:0", "attached_pic",
                     "-metadata:s:v", "comment=Cover (front)"]  # fmt: skip
        command += [*maps, *MUXER_OPTIONS.get(suffix, []), "-f", MUXERS[suffix], str(temp)]
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    if done.returncode != 0:
        _raise_ffmpeg_error(suffix, done.stderr.decode(errors="replace").strip())


def _tag_mp3(
    streams: list[Path], parts: list[EncodingPart], temp: Path, metadata: Metadata, total: int
) -> None:
    """The ID3 tag, then the bare stream as the encoder wrote it (its LAME header, which
    holds the encoder's delay for gapless decoding, included), or its parts joined."""
    chapters = [
        id3.Chapter(c.title, round(c.start * 1000 / RATE), round(c.end * 1000 / RATE))
        for c in metadata.chapters
    ]
    cover = metadata.cover.read_bytes() if metadata.cover is not None else None
    if len(streams) > 1:
        encoded = [mpeg.read_part(s, p.start) for s, p in zip(streams, parts, strict=True)]
        seams = [
            mpeg.seam(a, b, *p.seam_window())
            for a, b, p in zip(encoded[:-1], encoded[1:], parts[1:], strict=True)
        ]
    with temp.open("wb") as out:
        out.write(id3.tag(metadata.tags, chapters, cover))
        if len(streams) > 1:
            mpeg.join(encoded, seams, total, out)
        else:
            with streams[0].open("rb") as source:
                shutil.copyfileobj(source, out, COPY_BYTES)


def _raise_ffmpeg_error(suffix: str, error: str) -> NoReturn:
    if "No space left on device" in error:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    raise GuidedAudioError(f"ffmpeg could not encode {suffix}: {error}")


# --- speakers --------------------------------------------------------------------------------
BACKENDS = ("miniaudio", "simpleaudio")
DEFAULT_BACKEND = "miniaudio"
DEVICE_PERIOD_MS = 50
DEVICE_PERIODS = 4  # 200 ms in the device: keys act at once, a busy machine does not drop out
SIMPLEAUDIO_CHUNK_S = 1.0
Pull = Callable[[int], bytes]  # frames wanted -> that many 16-bit stereo frames
Ready = Callable[[int, float], bool]  # until frames are buffered (or timeout s): whether they are
_ALSA_HANDLER: Any = None


class Output:
    """An open sound device that pulls samples until closed."""

    latency_s = 0.0

    def start(self, pull: Pull, ready: Ready) -> None:
        raise NotImplementedError

    def drain(self) -> None:
        """Wait while the device plays out what it holds (before a close, at the end)."""
        time.sleep(self.latency_s)

    def close(self) -> None:
        raise NotImplementedError


def no_device(detail: object) -> AudioDeviceError:
    return AudioDeviceError(
        f"no audio output device is available ({detail}); "
        "export the session instead: guided-audio export FILE"
    )


def _quiet_alsa() -> None:
    """Stop libasound printing its own lines to stderr when there is no sound card."""
    global _ALSA_HANDLER
    if _ALSA_HANDLER is not None:
        return
    name = ctypes.util.find_library("asound")
    if name is None:
        return
    try:
        library = ctypes.CDLL(name)
    except OSError:
        return
    handler_type = ctypes.CFUNCTYPE(
        None, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p
    )
    _ALSA_HANDLER = handler_type(lambda *_: None)  # kept alive: libasound holds the pointer
    library.snd_lib_error_set_handler(_ALSA_HANDLER)


class MiniaudioOutput(Output):
    """One stream for the whole session through miniaudio (wheels, no compiler): the
    device's thread asks a generator for each period."""

    # Real outputs only, in the usual order: never the silent "null" device.
    PREFERRED = ("PULSEAUDIO", "ALSA", "JACK", "WASAPI", "DSOUND", "WINMM", "COREAUDIO",
                 "SNDIO", "AUDIO4", "OSS", "AAUDIO", "OPENSL", "WEBAUDIO")  # fmt: skip

    def __init__(self) -> None:
        try:
            import miniaudio
        except ImportError:
            raise GuidedAudioError(
                "the miniaudio package is missing; run ./setup.sh (or pip install miniaudio)"
            ) from None
        _quiet_alsa()
        enabled = {b.name for b in miniaudio.get_enabled_backends()}
        backends = [miniaudio.Backend[n] for n in self.PREFERRED if n in enabled]
        try:
            self._device = miniaudio.PlaybackDevice(
                output_format=miniaudio.SampleFormat.SIGNED16,
                nchannels=CHANNELS,
                sample_rate=RATE,
                buffersize_msec=DEVICE_PERIOD_MS,
                callback_periods=DEVICE_PERIODS,
                backends=backends,
                app_name="guided-audio",
            )
        except miniaudio.MiniaudioError as exc:
            raise no_device(exc.args[0] if exc.args else exc) from None
        self.latency_s = DEVICE_PERIODS * DEVICE_PERIOD_MS / 1000

    def start(self, pull: Pull, ready: Ready) -> None:
        del ready  # the device asks for a period at a time; the player stays seconds ahead

        def feed() -> Generator[bytes, int, None]:
            frames = yield b""
            while True:
                frames = yield pull(frames)

        generator = feed()
        next(generator)
        self._device.start(generator)

    def close(self) -> None:
        self._device.close()


class SimpleaudioOutput(Output):
    """simpleaudio, where it works: it has no stream, so the device reopens each second
    (a few milliseconds of gap each time). It crashes CPython 3.12 and later."""

    def __init__(self) -> None:
        if sys.version_info >= (3, 12):
            raise GuidedAudioError(
                "simpleaudio crashes on Python 3.12 and later (a known upstream bug); "
                "use the default backend: --backend miniaudio"
            )
        try:
            import simpleaudio
        except ImportError:
            raise GuidedAudioError(
                "simpleaudio is not installed (it needs a compiler: pip install simpleaudio); "
                "the default backend needs nothing: --backend miniaudio"
            ) from None
        _quiet_alsa()
        self._module = simpleaudio
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._draining = threading.Event()

    def _play(self, data: bytes) -> Any:
        try:
            return self._module.play_buffer(data, CHANNELS, 2, RATE)
        except self._module._simpleaudio.SimpleaudioError as exc:
            raise no_device(exc) from None

    def start(self, pull: Pull, ready: Ready) -> None:
        frames = effects.seconds_to_samples(SIMPLEAUDIO_CHUNK_S)
        ready(frames, SIMPLEAUDIO_CHUNK_S)  # a whole chunk each time, or it would hold a gap
        first = self._play(pull(frames))  # here, so a missing device is reported at once

        def run() -> None:
            playing = first
            while True:
                while playing.is_playing() and not self._closed.is_set():
                    time.sleep(0.01)
                playing.stop()
                if self._closed.is_set() or self._draining.is_set():
                    return
                ready(frames, SIMPLEAUDIO_CHUNK_S)
                playing = self._play(pull(frames))

        self._thread = threading.Thread(target=run, name="simpleaudio", daemon=True)
        self._thread.start()

    def drain(self) -> None:
        self._draining.set()
        if self._thread is not None:
            self._thread.join(timeout=SIMPLEAUDIO_CHUNK_S + 10)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def open_output(backend: str = DEFAULT_BACKEND) -> Output:
    """The sound device, opened (AudioDeviceError when there is none)."""
    if backend == "simpleaudio":
        return SimpleaudioOutput()
    return MiniaudioOutput()


class Clip(Windowed):
    """A short, whole piece of audio as a source (a bell preview)."""

    def __init__(self, samples: Audio) -> None:
        self.samples = samples if samples.ndim == 2 else np.repeat(samples[:, None], CHANNELS, 1)

    @property
    def total(self) -> int:
        return len(self.samples)

    def render(self, start: int, stop: int) -> Audio:
        return self.samples[start:stop]


MEASURES = {MEASURE_STDIN: measure_stdin, MEASURE_MP3_STDIN: measure_mp3_stdin}

if __name__ == "__main__" and sys.argv[1] in MEASURES:
    _skip, _take = sys.argv[2:4]
    MEASURES[sys.argv[1]](int(_skip), None if _take == "None" else int(_take))
