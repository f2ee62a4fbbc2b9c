"""The ffmpeg program: where it is, and its failures as one line."""

from __future__ import annotations

import errno
import os
import shutil
from typing import NoReturn

from guided_audio.errors import GuidedAudioError


def ffmpeg() -> str | None:
    return shutil.which("ffmpeg")


def raise_ffmpeg_error(suffix: str, error: str) -> NoReturn:
    if "No space left on device" in error:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    raise GuidedAudioError(f"ffmpeg could not encode {suffix}: {error}")
