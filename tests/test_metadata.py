"""What a therapist's export carries, read back by tools the project did not write:
ffprobe for chapters, mutagen for tags and the cover, pyloudnorm for the report."""

from __future__ import annotations

import json
import re
import struct
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import resample_poly

from conftest import cli, decode, write
from guided_audio import session
from guided_audio.dsp.effects import RATE
from guided_audio.export import id3
from guided_audio.export.encode import COVER_FORMATS
from guided_audio.export.tags import GENRE
from guided_audio.plan.timeline import SectionSpan
from guided_audio.session import Options, Silent

SCRIPT = """\
title: Arriving in the body
description: Ten minutes to settle; stop at any time.
author: Dana Reyes, LMFT
album: Integration support
cover: cover.png
sections:
  - title: Arriving
    steps:
      - say: Welcome. You may stop at any time.
      - pause: 3s
  - title: Noticing = feeling; here
    steps:
      - say: Notice the ground beneath you.
      - pause: 2s
  - title: Returning
    steps:
      - bell: chime
      - say: Come back slowly.
"""


def png(width: int = 2, height: int = 2) -> bytes:
    """A small valid PNG, made here."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x80\x60\x40" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _ffprobe(path: Path) -> dict[str, object]:
    shown = subprocess.run(
        ["ffprobe", "-v", "error", "-print_format", "json", "-show_chapters", "-show_format",
         "-show_streams", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    data: dict[str, object] = json.loads(shown.stdout)
    return data


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    folder = tmp_path_factory.mktemp("meta")
    (folder / "cover.png").write_bytes(png())
    script = write(folder, SCRIPT)
    out = folder / "arriving.mp3"
    result = cli("export", str(script), "-o", str(out))
    assert result.exit_code == 0, result.output
    return script, out, result.stdout


def test_mp3_chapters_are_in_order_at_the_plan_times(exported: tuple[Path, Path, str]) -> None:
    script, out, _ = exported
    timeline = session.timeline(script, Options(), Silent())
    chapters = _ffprobe(out)["chapters"]
    assert isinstance(chapters, list)
    assert [c["tags"]["title"] for c in chapters] == [s.title for s in timeline.sections]
    for chapter, span in zip(chapters, timeline.sections, strict=True):
        assert abs(float(chapter["start_time"]) - span.start / 44100) <= 0.020
        assert abs(float(chapter["end_time"]) - span.end / 44100) <= 0.020


def test_mp3_has_a_table_of_contents_tags_and_the_cover(exported: tuple[Path, Path, str]) -> None:
    from mutagen.id3 import ID3, CTOCFlags

    _, out, _ = exported
    tags = ID3(out)
    assert tags.version[:2] == (2, 3)
    tocs = tags.getall("CTOC")
    assert len(tocs) == 1 and tocs[0].flags & CTOCFlags.TOP_LEVEL  # players need it
    chaps = {c.element_id: c for c in tags.getall("CHAP")}
    assert list(tocs[0].child_element_ids) == sorted(chaps, key=lambda e: chaps[e].start_time)
    assert str(tags["TIT2"]) == "Arriving in the body"
    assert str(tags["TPE1"]) == "Dana Reyes, LMFT"
    assert str(tags["TALB"]) == "Integration support"
    assert str(tags.getall("COMM")[0]) == "Ten minutes to settle; stop at any time."
    assert re.fullmatch(r"\d{4}", str(tags["TDRC"]))  # TYER in the file; mutagen reads v2.4
    assert str(tags["TCON"]) == GENRE
    pictures = tags.getall("APIC")
    assert len(pictures) == 1 and pictures[0].type == 3  # the front cover
    assert pictures[0].data == png()


@pytest.mark.slow
def test_players_read_the_mp3s_length_from_its_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A VBR MP3's length and seek table are in its first frame (Xing/LAME): a tag whose size
    # is off by a byte hides that frame, and players then guess the length from a bitrate.
    from mutagen.mp3 import MP3, BitrateMode

    monkeypatch.setenv("GUIDED_AUDIO_CACHE", str(tmp_path / "cache"))  # its own takes
    (tmp_path / "cover.png").write_bytes(png())
    script, out = write(tmp_path, SCRIPT), tmp_path / "arriving.mp3"
    result = cli("export", str(script), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    seconds = session.timeline(script, Options(), Silent()).total / 44100
    info = MP3(out).info
    assert info is not None
    assert info.bitrate_mode == BitrateMode.VBR
    frame_s = 1152 / 44100  # the header counts whole frames, the encoder's delay included
    assert seconds <= info.length <= seconds + 2 * frame_s
    fmt = _ffprobe(out)["format"]
    assert isinstance(fmt, dict)
    assert seconds <= float(fmt["duration"]) <= seconds + 2 * frame_s
    # The encoder's delay is trimmed on decoding, and its padding too, but for lengths whose
    # last frame is padded by less than the decoder's delay (529 samples): ffmpeg keeps that
    # padding as trailing silence (so does a bare encode of the same samples).
    extra = len(decode(out)) - round(seconds * 44100)
    assert 0 <= extra < 529


def test_many_unicode_chapters_stay_in_order(tmp_path: Path) -> None:
    # A CTOC lists at most 255 entries: past that, it lists tables of 255 each.
    from mutagen.id3 import ID3, CTOCFlags

    encoded = tmp_path / "bare.mp3"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo",
         "-t", "310", "-c:a", "libmp3lame", "-q:a", "2", "-id3v2_version", "0", str(encoded)],
        check=True,
    )  # fmt: skip
    titles = [f"Étape {n} · 呼吸" for n in range(300)]
    chapters = [SectionSpan(t, n * RATE, (n + 1) * RATE) for n, t in enumerate(titles)]
    out = tmp_path / "many.mp3"
    out.write_bytes(id3.tag({"title": "Ünïcode"}, chapters) + encoded.read_bytes())
    probed = _ffprobe(out)["chapters"]
    assert isinstance(probed, list)
    assert [c["tags"]["title"] for c in probed] == titles
    assert [round(float(c["start_time"]) * 1000) for c in probed] == [n * 1000 for n in range(300)]
    tags = ID3(out)
    assert str(tags["TIT2"]) == "Ünïcode"
    tocs = {t.element_id: t for t in tags.getall("CTOC")}
    top = [t for t in tocs.values() if t.flags & CTOCFlags.TOP_LEVEL]
    assert len(top) == 1
    listed = [e for child in top[0].child_element_ids for e in tocs[child].child_element_ids]
    chaps = {c.element_id: c for c in tags.getall("CHAP")}
    assert [str(chaps[e].sub_frames["TIT2"]) for e in listed] == titles


def test_chapters_json_beside_the_audio(exported: tuple[Path, Path, str]) -> None:
    script, out, _ = exported
    timeline = session.timeline(script, Options(), Silent())
    data = json.loads(out.with_name("arriving.chapters.json").read_text())
    assert data["version"] == "1.2.0"
    assert [c["title"] for c in data["chapters"]] == [s.title for s in timeline.sections]
    starts = [c["startTime"] for c in data["chapters"]]
    assert starts == [round(s.start / 44100, 3) for s in timeline.sections]


def test_report_line_is_measured_on_the_written_file(exported: tuple[Path, Path, str]) -> None:
    import pyloudnorm

    _, out, stdout = exported
    match = re.fullmatch(
        rf"{re.escape(str(out))}  (\d\d):(\d\d)  3 chapters  (-?\d+\.\d) LUFS  (-?\d+\.\d) dBTP\n",
        stdout,
    )
    assert match, stdout
    audio = decode(out)
    assert int(match[1]) * 60 + int(match[2]) == int(len(audio) / 44100)
    measured = pyloudnorm.Meter(44100).integrated_loudness(audio)
    assert float(match[3]) == pytest.approx(measured, abs=0.2)
    # The MP3 is decoded while it is written: its true peak, not the master's (-2 dBTP).
    oversampled = resample_poly(audio, 4, 1, axis=0)
    true_peak = 20 * np.log10(np.abs(oversampled).max())
    assert float(match[4]) == pytest.approx(true_peak, abs=0.15)
    assert float(match[4]) <= -1.0


@pytest.mark.parametrize(
    "suffix", [pytest.param(".flac", id="flac"), pytest.param(".ogg", id="ogg")]
)
def test_other_formats_carry_chapters_and_tags(tmp_path: Path, suffix: str) -> None:
    (tmp_path / "cover.png").write_bytes(png())
    script = write(tmp_path, SCRIPT)
    out = tmp_path / f"arriving{suffix}"
    result = cli("export", str(script), "-o", str(out))
    assert result.exit_code == 0, result.output
    probe = _ffprobe(out)
    chapters = probe["chapters"]
    assert isinstance(chapters, list) and len(chapters) == 3
    fmt = probe["format"]
    assert isinstance(fmt, dict)
    tags = {k.lower(): v for k, v in fmt.get("tags", {}).items()}
    streams = probe["streams"]
    assert isinstance(streams, list)
    for stream in streams:
        tags.update({k.lower(): v for k, v in stream.get("tags", {}).items()})
    assert tags["title"] == "Arriving in the body"
    assert tags["album"] == "Integration support"
    has_picture = any(s.get("disposition", {}).get("attached_pic") for s in streams)
    assert has_picture == (suffix in COVER_FORMATS)
    script_timeline = session.timeline(script, Options(), Silent())
    for chapter, span in zip(chapters, script_timeline.sections, strict=True):
        assert chapter["tags"]["title"] == span.title
        assert abs(float(chapter["start_time"]) - span.start / 44100) <= 0.020


def test_m4b_chapters_read_by_mutagen(tmp_path: Path) -> None:
    from mutagen.mp4 import MP4

    (tmp_path / "cover.png").write_bytes(png())
    script = write(tmp_path, SCRIPT)
    out = tmp_path / "arriving.m4b"
    assert cli("export", str(script), "-o", str(out), "-q").exit_code == 0
    book = MP4(out)
    assert book.chapters is not None and book.tags is not None
    timeline = session.timeline(script, Options(), Silent())
    assert [c.title for c in book.chapters] == [s.title for s in timeline.sections]
    for chapter, span in zip(book.chapters, timeline.sections, strict=True):
        assert abs(chapter.start - span.start / 44100) <= 0.020
    assert book.tags["\xa9nam"] == ["Arriving in the body"]
    assert bytes(book.tags["covr"][0]) == png()


@pytest.mark.parametrize(
    ("cover", "content", "message"),
    [
        pytest.param("missing.png", None, "cover file 'missing.png' does not exist", id="missing"),
        pytest.param("notes.png", b"not an image", "is not a PNG or JPEG image", id="not-image"),
        pytest.param("huge.png", png() + bytes(6 * 1024 * 1024), "the limit is 5 MB", id="too-big"),
    ],
)
def test_a_bad_cover_is_a_located_error(
    tmp_path: Path, cover: str, content: bytes | None, message: str
) -> None:
    if content is not None:
        (tmp_path / cover).write_bytes(content)
    script = write(tmp_path, SCRIPT.replace("cover: cover.png", f"cover: {cover}"))
    result = cli("export", str(script), "-o", str(tmp_path / "out.mp3"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{script}:5:8: ")
    assert message in result.stderr
    assert not (tmp_path / "out.mp3").exists()
    assert not list(tmp_path.glob(".*"))


HOUR = "title: An hour\nsections:\n" + "".join(
    f"  - title: Part {n}\n    steps:\n      - bell: chime\n      - pause: 9m50s\n"
    for n in range(1, 7)
)
PROBE_RATE = 8000  # decoded at a low rate: an hour of mono is 57 MB, onsets still to 0.1 ms


@pytest.mark.parametrize("suffix", [".mp3", ".m4b"])
@pytest.mark.slow
def test_chapters_stay_on_the_sound_over_an_hour(tmp_path: Path, suffix: str) -> None:
    # Chapter times are checked against where each section's bell is heard in the decoded
    # file: encoder delay or drift would move the sound away from its chapter.
    import numpy as np

    script = write(tmp_path, HOUR)
    out = tmp_path / f"hour{suffix}"
    result = cli("export", str(script), "-o", str(out), "--loudness", "off", "-q")
    assert result.exit_code == 0, result.output
    pcm = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(out), "-ac", "1", "-ar", str(PROBE_RATE),
         "-f", "s16le", "pipe:1"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    level = np.abs(np.frombuffer(pcm, dtype=np.int16).astype(np.float64)) / 32768
    chapters = _ffprobe(out)["chapters"]
    assert isinstance(chapters, list) and len(chapters) == 6
    timeline = session.timeline(script, Options(), Silent())
    for chapter, span in zip(chapters, timeline.sections, strict=True):
        start = float(chapter["start_time"])
        if span is timeline.sections[0] and start == 0.0:
            start = (
                span.start / 44100
            )  # MP4 chapters cover the file: the first one holds the lead-in
        assert abs(start - span.start / 44100) <= 0.020
        first = max(0, int((start - 0.4) * PROBE_RATE))  # sections are 10 min apart
        window = level[first : int((start + 1) * PROBE_RATE)]
        heard = (first + np.flatnonzero(window > 10 ** (-50 / 20))[0]) / PROBE_RATE
        assert abs(heard - start) <= 0.020, (chapter["tags"]["title"], heard, start)
