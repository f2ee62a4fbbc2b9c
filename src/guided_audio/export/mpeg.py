"""MP3 parts encoded at once, joined into one stream that decodes as one encoding would.

An MP3 frame is not independent of the one before it: its data may begin in the frames
before it (LAME's bit reservoir) and its transform overlaps the last one's. So each part
after the first is encoded from a second before where it joins (its encoder settles on the
same decisions as the one before), and the parts are joined at a frame where both use long
blocks and the earlier part leaves room for the reservoir bytes the later part's frame
takes from before it; those bytes are moved across. The Xing/LAME header is rewritten for
the whole: frames, bytes, seek table, end padding and both CRCs.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from guided_audio.errors import GuidedAudioError

SAMPLES_PER_FRAME = 1152
_BITRATES_KBPS = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
_SAMPLE_RATES = (44100, 48000, 32000)
_LAYER3_MPEG1 = 0xFA  # second header byte (sync, MPEG-1, Layer III), less the CRC bit
HEADER_BYTES = 4
CRC_BYTES = 2
READ_BYTES = 1 << 20

# The Xing/LAME header, as offsets from its "Xing" (or "Info") tag
XING_TAGS = (b"Xing", b"Info")
XING_FRAMES, XING_BYTES, XING_TOC = 8, 12, 16
TOC_ENTRIES = 100
LAME_DELAY_PADDING = 141  # 12 bits of encoder delay, then 12 of end padding
LAME_MUSIC_LENGTH = 148
LAME_MUSIC_CRC = 152
LAME_TAG_CRC = 154  # CRC-16 of the frame up to here
MAX_PADDING = (1 << 12) - 1
DECODER_DELAY = 528 + 1  # samples a decoder's filter bank adds before LAME's own delay


class CannotJoin(GuidedAudioError):
    """No frame in the window joins two parts cleanly (the caller encodes in one part)."""


def _frame_lengths() -> list[int]:
    """Frame length in bytes for each value of a header's third byte (0: not MPEG-1 L3)."""
    lengths = [0] * 256
    for byte in range(256):
        bitrate, rate, padding = byte >> 4, (byte >> 2) & 3, (byte >> 1) & 1
        if 0 < bitrate < len(_BITRATES_KBPS) and rate < len(_SAMPLE_RATES):
            lengths[byte] = 144_000 * _BITRATES_KBPS[bitrate] // _SAMPLE_RATES[rate] + padding
    return lengths


_LENGTHS = _frame_lengths()


@dataclass(frozen=True)
class Frame:
    """What joining needs of one frame's header and side information."""

    length: int
    side: int  # bytes before its main data area: header, CRC, side information
    reservoir: int  # main_data_begin: bytes of its data that lie in the frames before it
    data: int  # bytes of its main data
    long_blocks: bool  # no granule of it switches to short windows

    @property
    def area(self) -> int:
        return self.length - self.side

    @property
    def room_after(self) -> int:
        """Bytes of the main data area up to the next frame that its own data leaves free."""
        return self.area + self.reservoir - self.data


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.value, self.left = int.from_bytes(data, "big"), len(data) * 8

    def take(self, bits: int) -> int:
        self.left -= bits
        return (self.value >> self.left) & ((1 << bits) - 1)


def parse_frame(data: bytes) -> Frame:
    """A frame's header and side information (MPEG-1 Layer III)."""
    length = _LENGTHS[data[2]]
    mono = data[3] >> 6 == 3
    start = HEADER_BYTES + (0 if data[1] & 1 else CRC_BYTES)
    channels, side_bytes = (1, 17) if mono else (2, 32)
    bits = _Bits(data[start : start + side_bytes])
    reservoir = bits.take(9)
    bits.take((5 if mono else 3) + 4 * channels)  # private bits, scale factor selection
    main_bits, switching = 0, False
    for _granule_channel in range(2 * channels):
        main_bits += bits.take(12)  # part2_3_length
        bits.take(9 + 8 + 4)  # big_values, global_gain, scalefac_compress
        switching |= bool(bits.take(1))
        bits.take(22 + 3)  # block type or table selects and regions; three flags
    return Frame(length, start + side_bytes, reservoir, (main_bits + 7) // 8, not switching)


# --- CRC-16 (the LAME tag's: polynomial 0x8005, reflected, starting at 0) --------------------
def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()
_Operator = list[int]  # a linear map of the 16-bit register: the image of each bit


def crc16(data: bytes, crc: int = 0) -> int:
    """For headers and the few kilobytes around a join (a pure-Python loop)."""
    table = _CRC_TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc


def _apply(operator: _Operator, crc: int) -> int:
    out = 0
    for bit, image in enumerate(operator):
        if crc >> bit & 1:
            out ^= image
    return out


def _after_zeros(count: int) -> _Operator:
    """What `count` zero bytes do to the register (by squaring: any length at once)."""
    result = [1 << bit for bit in range(16)]
    step = [crc16(b"\0", 1 << bit) for bit in range(16)]
    while count:
        if count & 1:
            result = [_apply(step, image) for image in result]
        step = [_apply(step, image) for image in step]
        count >>= 1
    return result


def crc16_joined(first: int, second: int, second_length: int) -> int:
    """CRC of two pieces one after the other, from the CRC of each: CRCs starting at 0
    are linear, so the first one's only moves through the second's length of zeros."""
    return _apply(_after_zeros(second_length), first) ^ second


def crc16_before(whole: int, tail: int, tail_length: int) -> int:
    """CRC of a piece from the CRC of it with a tail, and the tail's."""
    operator = _after_zeros(tail_length)
    registers = np.arange(1 << 16, dtype=np.int64)
    images = np.zeros(1 << 16, dtype=np.int64)
    for bit, image in enumerate(operator):
        images ^= np.where(registers >> bit & 1, image, 0)
    inverse = np.empty(1 << 16, dtype=np.int64)
    inverse[images] = registers  # the map is one to one: the polynomial is odd
    return int(inverse[whole ^ tail])


# --- parts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Part:
    """One encoder's stream: its Xing/LAME frame, then audio frames; the first of them is
    frame `first_frame` of the whole session."""

    path: Path
    first_frame: int
    offsets: array[int]  # of every frame, the Xing frame (at 0) included, then its end
    xing: bytes

    @property
    def frames(self) -> int:
        """Audio frames (the Xing frame not counted)."""
        return len(self.offsets) - 2

    def span(self, first: int, stop: int) -> tuple[int, int]:
        """Byte offsets of frames [first, stop) of the session."""
        return self.offsets[first - self.first_frame + 1], self.offsets[stop - self.first_frame + 1]

    def read(self, first: int, stop: int) -> bytes:
        begin, end = self.span(first, stop)
        with self.path.open("rb") as stream:
            stream.seek(begin)
            return stream.read(end - begin)

    def frame(self, index: int) -> Frame:
        return parse_frame(self.read(index, index + 1))

    def _field(self, offset: int, size: int) -> int:
        start = _xing_at(self.xing) + offset
        return int.from_bytes(self.xing[start : start + size], "big")

    @property
    def delay(self) -> int:
        return lame_delay(self.xing)

    @property
    def music_crc(self) -> int:
        return self._field(LAME_MUSIC_CRC, 2)


def _xing_at(frame: bytes) -> int:
    for tag in XING_TAGS:
        at = frame.find(tag, 0, 64)
        if at >= 0:
            return at
    raise GuidedAudioError("the encoder wrote no Xing/LAME header")


def lame_delay(xing: bytes) -> int:
    """The encoder delay (samples before the first input sample) a Xing/LAME frame records."""
    start = _xing_at(xing) + LAME_DELAY_PADDING
    return int.from_bytes(xing[start : start + 3], "big") >> 12


def frame_length(header: bytes) -> int:
    """A frame's bytes, from its 4-byte header (0: not an MPEG-1 Layer III header)."""
    if len(header) < HEADER_BYTES or header[0] != 0xFF or header[1] | 1 != _LAYER3_MPEG1 | 1:
        return 0
    return _LENGTHS[header[2]]


def read_part(path: Path, start_sample: int) -> Part:
    """A part's frames, found by walking their headers; it was encoded from
    `start_sample` (a whole number of frames)."""
    offsets: array[int] = array("q")
    lengths = _LENGTHS
    with path.open("rb") as stream:
        buffer, base, pos = stream.read(READ_BYTES), 0, 0
        while True:
            end = len(buffer) - HEADER_BYTES
            while pos <= end:
                length = lengths[buffer[pos + 2]]
                if buffer[pos] != 0xFF or buffer[pos + 1] | 1 != _LAYER3_MPEG1 | 1 or not length:
                    raise GuidedAudioError(f"{path} holds something other than MP3 frames")
                offsets.append(base + pos)
                pos += length
            more = stream.read(READ_BYTES)
            if not more:
                break
            base, buffer, pos = base + pos, (buffer + more)[pos:], 0  # pos may be past it
        offsets.append(base + pos)
    if len(offsets) < 2:
        raise GuidedAudioError(f"{path} holds no MP3 frames")
    with path.open("rb") as stream:
        xing = stream.read(offsets[1])
    return Part(path, start_sample // SAMPLES_PER_FRAME, offsets, xing)


def seam(before: Part, after: Part, first: int, stop: int) -> int:
    """The first frame in [first, stop) at which `after` can follow `before`: both parts'
    frames there (and `after`'s one before) use long blocks only, and `before` leaves room
    for the bytes `after`'s frame keeps in its reservoir."""
    ours = [before.frame(i) for i in range(first - 1, stop)]
    theirs = [after.frame(i) for i in range(first - 1, stop)]
    for index in range(first, stop):
        last = ours[index - first]
        lead, joining = theirs[index - first], theirs[index - first + 1]
        if (
            last.long_blocks
            and lead.long_blocks
            and joining.long_blocks
            and last.room_after >= joining.reservoir
        ):
            return index
    raise CannotJoin(f"no frame in [{first}, {stop}) joins {before.path} and {after.path}")


def _moved_reservoir(before: Part, after: Part, index: int) -> tuple[int, bytes]:
    """The frames of `before` that end at `index`, with their last main data bytes
    replaced by those `after`'s frame `index` keeps in its reservoir; the first of them."""
    wanted = after.frame(index).reservoir
    # `after`'s reservoir bytes: the ends of its frames' data areas before `index`
    taken, back = b"", index
    while len(taken) < wanted:
        back -= 1
        raw = after.read(back, back + 1)
        taken = raw[parse_frame(raw).side :] + taken
    taken = taken[len(taken) - wanted :] if wanted else b""
    # where they go: the ends of `before`'s data areas before `index`
    first, room = index, 0
    while room < wanted or first == index:
        first -= 1
        room += before.frame(first).area
    patched = bytearray(before.read(first, index))
    frame_ends, cursor = [], 0
    for i in range(first, index):
        frame = before.frame(i)
        frame_ends.append((cursor + frame.side, cursor + frame.length))
        cursor += frame.length
    left = wanted
    for area_start, area_end in reversed(frame_ends):
        move = min(left, area_end - area_start)
        if move:
            patched[area_end - move : area_end] = taken[left - move : left]
        left -= move
    return first, bytes(patched)


def _crc_of_frames(part: Part, first: int, stop: int) -> int:
    """CRC of frames [first, stop) of a part, from the CRC of all of them in its LAME tag
    and of the few frames before and after (so the bulk is never read here)."""
    lo, hi = part.first_frame, part.first_frame + part.frames
    head = crc16(part.read(lo, first))
    tail = part.read(stop, hi)
    with_head = crc16_before(part.music_crc, crc16(tail), len(tail))
    middle_length = part.span(first, stop)[1] - part.span(first, stop)[0]
    # with_head = head followed by middle: take the head's contribution out
    return with_head ^ _apply(_after_zeros(middle_length), head)


def join(parts: Sequence[Part], seams: Sequence[int], samples: int, out: BinaryIO) -> None:
    """Write the parts as one stream: part i up to frame seams[i], then part i + 1."""
    delay = parts[0].delay
    if any(part.delay != delay for part in parts):
        raise GuidedAudioError("the parts' encoders delayed the audio differently")
    total_frames = parts[-1].first_frame + parts[-1].frames
    padding = total_frames * SAMPLES_PER_FRAME - delay - samples
    if not 0 <= padding <= MAX_PADDING:
        raise GuidedAudioError(f"the parts do not cover {samples} samples")
    pieces: list[tuple[Part, int, int, bytes | None]] = []  # copied frames, or patched bytes
    start = parts[0].first_frame
    for i, part in enumerate(parts):
        stop = total_frames if i == len(parts) - 1 else seams[i]
        if i < len(parts) - 1:
            patch_first, patched = _moved_reservoir(part, parts[i + 1], stop)
            pieces += [(part, start, patch_first, None), (part, patch_first, stop, patched)]
        else:
            pieces.append((part, start, stop, None))
        start = stop
    # Where each piece lands in the stream, for the seek table
    landed: list[tuple[int, int]] = []  # first frame, byte offset
    position = len(parts[0].xing)
    music_crc = 0
    for part, first, stop, replaced in pieces:
        landed.append((first, position))
        begin, end = part.span(first, stop)
        position += end - begin
        if replaced is not None:
            music_crc = crc16(replaced, music_crc)
        elif first < stop:
            music_crc = crc16_joined(music_crc, _crc_of_frames(part, first, stop), end - begin)

    def offset_of(frame: int) -> int:
        at = max(i for i, (first, _) in enumerate(landed) if first <= frame)
        part, first = pieces[at][0], pieces[at][1]
        return landed[at][1] + part.span(first, frame)[1] - part.span(first, frame)[0]

    frames = total_frames - parts[0].first_frame
    toc = [offset_of(entry * frames // TOC_ENTRIES) for entry in range(TOC_ENTRIES)]
    header = _rewritten_xing(parts[0].xing, frames, toc, position, delay, padding, music_crc)
    out.write(header)
    for part, first, stop, replaced in pieces:
        if replaced is not None:
            out.write(replaced)
        else:
            _copy(part, first, stop, out)


def _copy(part: Part, first: int, stop: int, out: BinaryIO) -> None:
    """Frames [first, stop) of a part as they are."""
    begin, end = part.span(first, stop)
    with part.path.open("rb") as stream:
        stream.seek(begin)
        left = end - begin
        while left:
            chunk = stream.read(min(left, READ_BYTES))
            if not chunk:
                raise GuidedAudioError(f"{part.path} ended early")
            out.write(chunk)
            left -= len(chunk)


def _rewritten_xing(
    xing: bytes,
    frames: int,
    toc: list[int],
    total_bytes: int,
    delay: int,
    padding: int,
    music_crc: int,
) -> bytes:
    frame = bytearray(xing)
    at = _xing_at(xing)

    def put(offset: int, value: int, size: int) -> None:
        frame[at + offset : at + offset + size] = value.to_bytes(size, "big")

    put(XING_FRAMES, frames, 4)
    put(XING_BYTES, total_bytes, 4)
    for entry, offset in enumerate(toc):  # the byte at each hundredth of the length, of 256
        frame[at + XING_TOC + entry] = min(255, offset * 256 // total_bytes)
    put(LAME_DELAY_PADDING, delay << 12 | padding, 3)
    put(LAME_MUSIC_LENGTH, total_bytes, 4)
    put(LAME_MUSIC_CRC, music_crc, 2)
    put(LAME_TAG_CRC, crc16(bytes(frame[: at + LAME_TAG_CRC])), 2)
    return bytes(frame)
