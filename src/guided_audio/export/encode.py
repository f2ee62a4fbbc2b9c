"""The encoders: each part of a session fed to an ffmpeg of its own from a writer thread,
then the bare streams packaged with their tags (an MP3's ID3 tag written here, its parts
joined).
"""

from __future__ import annotations

import queue
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, RATE
from guided_audio.dsp.loudness import gated_loudness
from guided_audio.export import id3, mpeg
from guided_audio.export.ffmpeg import ffmpeg, raise_ffmpeg_error
from guided_audio.export.follow import FOLLOWED, Follower, widen_pipe
from guided_audio.export.parts import EncodingPart
from guided_audio.export.tags import Metadata, ffmetadata
from guided_audio.files import signals_deferred
from guided_audio.mix.mixer import BLOCK, Windowed

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


def encoder_command(stream: Path, suffix: str) -> list[str]:
    return [
        ffmpeg() or "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y",
        "-f", "s16le", "-ar", str(RATE), "-ac", str(CHANNELS), "-i", "pipe:0",
        "-map_metadata", "-1", *ENCODERS[suffix], *STREAM_OPTIONS.get(suffix, []),
        "-f", MUXERS[suffix], str(stream),
    ]  # fmt: skip


def run_encoders(
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
                        encoder_command(stream, suffix),
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
        widen_pipe(self.stdin.fileno())
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
    """The blocks into started ffmpegs (see run_encoders, which ends them however this ends)."""
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
        raise_ffmpeg_error(suffix, "; ".join(e for e in errors if e) or str(broken[0]))
    if not followers:
        return None
    measured = [follower.finish() for follower in followers]
    energies = np.concatenate([m.energies for m in measured])
    return (
        sum(m.frames for m in measured),
        gated_loudness(energies),
        max(m.peak for m in measured),
    )


def package_streams(
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
        raise_ffmpeg_error(suffix, done.stderr.decode(errors="replace").strip())


def _tag_mp3(
    streams: list[Path], parts: list[EncodingPart], temp: Path, metadata: Metadata, total: int
) -> None:
    """The ID3 tag, then the bare stream as the encoder wrote it (its LAME header, which
    holds the encoder's delay for gapless decoding, included), or its parts joined."""
    cover = metadata.cover.read_bytes() if metadata.cover is not None else None
    if len(streams) > 1:
        encoded = [mpeg.read_part(s, p.start) for s, p in zip(streams, parts, strict=True)]
        seams = [
            mpeg.seam(a, b, *p.seam_window())
            for a, b, p in zip(encoded[:-1], encoded[1:], parts[1:], strict=True)
        ]
    with temp.open("wb") as out:
        out.write(id3.tag(metadata.tags, metadata.chapters, cover))
        if len(streams) > 1:
            mpeg.join(encoded, seams, total, out)
        else:
            with streams[0].open("rb") as source:
                shutil.copyfileobj(source, out, COPY_BYTES)
