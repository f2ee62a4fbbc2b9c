"""Sound devices: one stream for the whole session (miniaudio) fed by a callback, or
simpleaudio where it works; and a short clip as a source.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import numpy as np

from guided_audio.dsp import effects
from guided_audio.dsp.effects import CHANNELS, RATE, Audio
from guided_audio.errors import AudioDeviceError, GuidedAudioError
from guided_audio.mix.mixer import Windowed

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
