"""An MP3 encoded in parts at once (LAME uses one core): where each part starts, overlaps
the next and may be joined (by `mpeg.join`).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

from guided_audio.dsp.effects import RATE
from guided_audio.export import mpeg

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
