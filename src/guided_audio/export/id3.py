"""An MP3's ID3v2.3 tag, built as bytes: text tags, a comment players show, the cover, and
chapters (CHAP frames in time order under a top-level CTOC, which players need).

Written here rather than by a second ffmpeg run (a process and a copy of the stream: 0.15 s
on every export) or by a tag library (mutagen orders frames by size, and ffprobe lists
chapters in frame order).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from guided_audio.plan.timeline import SectionSpan, milliseconds

# ffmpeg's tag names (as in sinks.Metadata) -> ID3v2.3 text frames
TEXT_FRAMES = {
    "title": "TIT2",
    "artist": "TPE1",
    "album": "TALB",
    "date": "TYER",
    "genre": "TCON",
}
UTF16 = b"\x01"  # text encoding byte: UTF-16 with a byte order mark, any language
LATIN1 = b"\x00"
BOM = "\ufeff".encode("utf-16-le")
COVER_FRONT = b"\x03"  # APIC picture type
CTOC_ORDERED = 0x01
CTOC_TOP_LEVEL_ORDERED = bytes([0x02 | CTOC_ORDERED])
NO_BYTE_OFFSET = b"\xff\xff\xff\xff"  # CHAP: times, not byte offsets, place a chapter
MAX_CHILDREN = 255  # a CTOC counts its entries in one byte
SYNCHSAFE_MAX = (1 << 28) - 1


def _text(value: str) -> bytes:
    return UTF16 + BOM + value.encode("utf-16-le")


def _frame(frame_id: str, payload: bytes) -> bytes:
    return frame_id.encode("ascii") + len(payload).to_bytes(4, "big") + b"\0\0" + payload


def _comment(text: str) -> bytes:
    # language, then an empty description and the text, both UTF-16 with their marks
    return _frame("COMM", UTF16 + b"eng" + BOM + b"\0\0" + BOM + text.encode("utf-16-le"))


def _picture(image: bytes) -> bytes:
    mime = b"image/png" if image.startswith(b"\x89PNG") else b"image/jpeg"
    return _frame("APIC", LATIN1 + mime + b"\0" + COVER_FRONT + b"Cover (front)\0" + image)


def _chapter(element_id: bytes, chapter: SectionSpan) -> bytes:
    start, end = milliseconds(chapter.start), milliseconds(chapter.end)
    times = start.to_bytes(4, "big") + end.to_bytes(4, "big")
    title = _frame("TIT2", _text(chapter.title))
    return _frame("CHAP", element_id + b"\0" + times + NO_BYTE_OFFSET * 2 + title)


def _toc(element_id: bytes, flags: bytes, children: Sequence[bytes]) -> bytes:
    entries = b"".join(child + b"\0" for child in children)
    return _frame("CTOC", element_id + b"\0" + flags + bytes([len(children)]) + entries)


def _tables_of_contents(chapter_ids: list[bytes]) -> Iterable[bytes]:
    """One top-level CTOC; past 255 chapters it lists ordered CTOCs of 255 each."""
    if len(chapter_ids) <= MAX_CHILDREN:
        yield _toc(b"toc", CTOC_TOP_LEVEL_ORDERED, chapter_ids)
        return
    groups = [chapter_ids[i : i + MAX_CHILDREN] for i in range(0, len(chapter_ids), MAX_CHILDREN)]
    group_ids = [f"toc{n}".encode("ascii") for n in range(len(groups))]
    yield _toc(b"toc", CTOC_TOP_LEVEL_ORDERED, group_ids)
    ordered_only = bytes([CTOC_ORDERED])
    for group_id, group in zip(group_ids, groups, strict=True):
        yield _toc(group_id, ordered_only, group)


def tag(
    tags: Mapping[str, str], chapters: Sequence[SectionSpan] = (), cover: bytes | None = None
) -> bytes:
    """The whole tag, header included, to put before the first MPEG frame."""
    frames = [_frame(TEXT_FRAMES[key], _text(value)) for key, value in tags.items()
              if key in TEXT_FRAMES]  # fmt: skip
    if "comment" in tags:
        frames.append(_comment(tags["comment"]))
    if cover is not None:
        frames.append(_picture(cover))
    chapter_ids = [f"ch{n}".encode("ascii") for n in range(len(chapters))]
    frames += _tables_of_contents(chapter_ids)
    frames += [_chapter(element_id, c) for element_id, c in zip(chapter_ids, chapters, strict=True)]
    body = b"".join(frames)
    if len(body) > SYNCHSAFE_MAX:
        raise ValueError(f"an ID3 tag holds at most {SYNCHSAFE_MAX} bytes, not {len(body)}")
    size = bytes((len(body) >> shift) & 0x7F for shift in (21, 14, 7, 0))  # synchsafe
    return b"ID3\x03\x00\x00" + size + body
