"""Shared fixtures: one speech cache for the whole run, helpers that decode and measure."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import wave
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result
from numpy.typing import NDArray

from guided_audio.cli import main

RATE = 44100

# Invalid fixtures (tests/fixtures/invalid) whose rule a JSON Schema cannot state, and why.
# Every other one must be rejected by the schema too, in the editor as by `validate`
# (test_authoring, test_editor): the two cannot drift apart silently.
BEYOND_A_SCHEMA = {
    "anchor": "anchors are refused while composing YAML, before any value is seen",
    "duplicate-key": "a YAML parser keeps the last of two equal keys",
    "empty-file": "an empty file is no document: there is nothing to check",
    "cue-too-long": "needs the spoken cue's rendered length",
    "too-long-session": "needs the rendered timeline",
    "inline-tag": "inside the text",
    "markup": "inside the text",
    "template-code": "inside the text",
    "undefined-variable": "inside the text, against the variables",
    "missing-bed-file": "the file system",
    "missing-model": "the file system",
    "damaged-wav": "the file's bytes",
    "absurd-rate": "the file's bytes",
    "missing-sound": "the file system",
    "not-audio": "the file's content",
    "undecodable-sound": "the file's content",
    "unknown-voice": "the voices installed here",
    "pronounce-bad-phonemes": "the voice's phoneme set",
    "pause-min-above": "compares two values of the same mapping",
    "cycles-bounds": "compares two values of the same mapping",
    "bilateral-say-too-long": "needs the spoken line's rendered length",
}

# CI may start the suite as a background job, with SIGINT ignored; children inherit that,
# and Python then never turns Ctrl-C into KeyboardInterrupt. The tests press Ctrl-C.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Speech renders once per test run, and the voice is cut once (never into the home
    folder); tests that need a fresh cache or fresh models make their own."""
    cache = tmp_path_factory.mktemp("audio_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GUIDED_AUDIO_CACHE", str(cache))
        patch.setenv("GUIDED_AUDIO_MODELS", str(tmp_path_factory.mktemp("voice_models")))
        yield cache


def cli(*args: str) -> Result:
    return CliRunner(mix_stderr=False).invoke(main, list(args))


def interrupt_when_ready(
    process: subprocess.Popen[str],
    ready: Callable[[], bool],
    what: str,
    signum: int = signal.SIGINT,
) -> str:
    """Wait (up to a minute) until `ready()`, send the signal (Ctrl-C by default), and
    return what stderr said."""
    deadline = time.monotonic() + 60
    while not ready() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready(), f"{what} never got going"
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    return stderr


def write(tmp_path: Path, text: str, name: str = "session.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def read_wav(path: Path) -> NDArray[np.float64]:
    """Decoded samples, shape (n, channels), floats in [-1, 1]."""
    with wave.open(str(path), "rb") as wav:
        data = np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)
        return data.reshape(-1, wav.getnchannels()).astype(np.float64) / 32768.0


def decode(path: Path) -> NDArray[np.float64]:
    """Any format, decoded by ffmpeg through pydub, as (n, 2) floats."""
    from pydub import AudioSegment

    with path.open("rb") as handle:
        segment = AudioSegment.from_file(handle).set_frame_rate(RATE).set_sample_width(2)
    data = np.frombuffer(segment.raw_data, dtype=np.int16).reshape(-1, segment.channels)
    return data.astype(np.float64) / 32768.0


def silences(
    audio: NDArray[np.float64], threshold_db: float = -60.0, min_s: float = 0.3
) -> list[tuple[float, float]]:
    """(start s, length s) of runs quieter than threshold_db (dBFS) lasting at least min_s."""
    level = np.abs(audio).max(axis=1) if audio.ndim == 2 else np.abs(audio)
    quiet = np.concatenate([[0], (level < 10 ** (threshold_db / 20)).astype(np.int8), [0]])
    edges = np.diff(quiet)
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return [
        (s / RATE, (e - s) / RATE)
        for s, e in zip(starts, ends, strict=True)
        if e - s >= min_s * RATE
    ]


# --- sound devices that tests can hear -------------------------------------------------------
REALTIME_NICENESS = -10  # what a sound server and a player get where the system allows it


def ahead_of_others() -> None:
    """In a child about to run in real time (a sound server, a player): a higher priority
    than the ordinary processes a shared machine runs beside the tests, where the system
    allows it (root, or CAP_SYS_NICE); elsewhere the child runs as it is."""
    with contextlib.suppress(OSError):
        os.nice(REALTIME_NICENESS)


def load_report(before: tuple[float, float]) -> str:
    """How busy the machine was since `before` (a reading of `cpu_times`): why a real-time
    test may have lost samples."""
    busy, total = cpu_times()
    share = (busy - before[0]) / max(total - before[1], 1e-9)
    load = Path("/proc/loadavg").read_text().split()[0] if Path("/proc/loadavg").exists() else "?"
    return (
        f"the machine's CPUs were {share:.0%} busy meanwhile, load average {load} on "
        f"{os.cpu_count()} cores: a real-time player loses samples when others take the cores"
    )


def cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs so far, from /proc/stat (zeros where there is none)."""
    try:
        fields = [float(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except OSError:
        return 0.0, 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)
    return sum(fields) - idle, sum(fields)


@dataclass(frozen=True)
class Pulse:
    """A private PulseAudio server with a null sink 'rt' that keeps real time."""

    runtime: Path

    @property
    def socket(self) -> Path:
        return self.runtime / "pulse" / "native"

    def native_env(self) -> dict[str, str]:
        """The player's own PulseAudio output goes to the null sink."""
        return {
            **os.environ,
            "XDG_RUNTIME_DIR": str(self.runtime),
            "PULSE_SERVER": f"unix:{self.socket}",
            "PULSE_SINK": "rt",
            "ALSA_CONFIG_PATH": "/nonexistent",
        }

    def alsa_capture_env(self, tmp_path: Path, capture: Path) -> dict[str, str]:
        """ALSA's default device writes every sample to `capture` and plays into the null
        sink, which sets the pace (a bare file sink keeps no time)."""
        config = tmp_path / "asound.conf"
        config.write_text(
            f'pcm.rt {{ type pulse server "unix:{self.socket}" device "rt" }}\n'
            f'pcm.!default {{ type file slave.pcm "rt" file "{capture}" format "raw" '
            "truncate false }\n"
        )
        env = {**os.environ, "ALSA_CONFIG_PATH": str(config)}
        env["PULSE_SERVER"] = "unix:/nonexistent"  # so the player takes the ALSA route
        env.pop("XDG_RUNTIME_DIR", None)
        return env

    @contextmanager
    def recording(self, path: Path) -> Iterator[None]:
        """What the null sink plays, as parec hears it from its monitor."""
        with path.open("wb") as out:
            process = subprocess.Popen(
                ["parec", "-d", "rt.monitor", "--raw", "--format=s16le", "--rate=44100",
                 "--channels=2"],
                stdout=out,
                env=self.native_env(),
            )  # fmt: skip
            try:
                deadline = time.monotonic() + 10
                while path.stat().st_size < 4 * RATE // 10 and time.monotonic() < deadline:
                    time.sleep(0.01)  # parec is recording (the monitor streams silence)
                assert path.stat().st_size, "parec recorded nothing"
                yield
                time.sleep(0.3)
            finally:
                process.terminate()
                process.wait(timeout=10)


@pytest.fixture(scope="session")
def pulse(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pulse]:
    runtime = tmp_path_factory.mktemp("pulse")
    runtime.chmod(0o700)
    server = Pulse(runtime)
    env = {**server.native_env(), "HOME": str(runtime)}
    env.pop("PULSE_SERVER")
    subprocess.run(
        ["pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--log-target=stderr",
         "--high-priority=yes",
         "--load=module-null-sink sink_name=rt rate=44100 channels=2",
         "--load=module-native-protocol-unix"],
        env=env, check=True, capture_output=True, preexec_fn=ahead_of_others,
    )  # fmt: skip
    deadline = time.monotonic() + 10
    while not server.socket.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.socket.exists(), "pulseaudio did not start"
    yield server
    subprocess.run(["pulseaudio", "--kill"], env=env, check=False, capture_output=True)


def read_raw(path: Path) -> NDArray[np.int16]:
    """A raw capture, interleaved 16-bit stereo. ALSA's file plugin starts a new file at
    each device open (capture.raw, capture.raw.0001, ...): they are joined in order."""
    files = sorted(path.parent.glob(path.name + "*"), key=lambda p: p.name)
    data = b"".join(p.read_bytes() for p in files)
    return np.frombuffer(data, dtype=np.int16).reshape(-1, 2)


def read_wav_int16(path: Path) -> NDArray[np.int16]:
    with wave.open(str(path), "rb") as wav:
        return np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16).reshape(-1, 2)


# --- where a capture came from in an export --------------------------------------------------
WINDOW = 2048
LSB = 1.0 / 32768


@dataclass
class Segment:
    """capture[start:end] == gain * export[start + shift : end + shift] (exactly, or to 1 LSB)."""

    start: int
    end: int
    shift: int
    gain: float

    @property
    def gain_db(self) -> float:
        return 20 * float(np.log10(self.gain))


def _matches(c: NDArray[np.float64], e: NDArray[np.float64], k: int, seg: Segment) -> bool:
    lo = k + seg.shift
    if lo < 0 or lo + WINDOW > len(e):
        return False
    return bool(np.abs(c[k : k + WINDOW] - seg.gain * e[lo : lo + WINDOW]).max() <= 1.5 * LSB)


def locate(c: NDArray[np.float64], e: NDArray[np.float64], k: int) -> Segment | None:
    """Where capture window k lies in the export (by correlation), if it matches exactly."""
    from scipy.signal import correlate

    probe = c[k : k + WINDOW, 0]
    energy = float(probe @ probe)
    if energy < (50 * LSB) ** 2 * WINDOW:
        return None
    corr = correlate(e[:, 0], probe, mode="valid", method="fft")
    sums = np.concatenate([[0.0], np.cumsum(e[:, 0] ** 2)])
    window_energy = np.maximum(sums[WINDOW:] - sums[:-WINDOW], 1e-12)
    score = corr / np.sqrt(window_energy * energy)
    best = int(np.argmax(score))
    segment = Segment(k, k + WINDOW, best - k, float(corr[best] / window_energy[best]))
    return segment if _matches(c, e, k, segment) else None


def segments(capture: NDArray[np.int16], export: NDArray[np.int16]) -> list[Segment]:
    """The capture as runs of the export, each with one shift and one gain; windows inside
    fades, ramps and silence belong to none."""
    c, e = capture.astype(np.float64) / 32768, export.astype(np.float64) / 32768
    found: list[Segment] = []
    for k in range(0, len(c) - WINDOW, WINDOW):
        if found and found[-1].end == k and _matches(c, e, k, found[-1]):
            found[-1].end = k + WINDOW
            continue
        segment = locate(c, e, k)
        if segment is None:
            continue
        last = found[-1] if found else None
        if last and last.shift == segment.shift and abs(last.gain - segment.gain) < 1e-3:
            last.end = segment.end
        else:
            found.append(segment)
    return found


def boundary(
    capture: NDArray[np.int16], export: NDArray[np.int16], a: Segment, b: Segment
) -> tuple[int, int]:
    """The last export sample heard of segment a, and the first of b.

    The capture between them holds a fade out of a, maybe silence, and a fade in of b:
    the boundary is where samples stop being an attenuated copy of a and start being one
    of b (accurate to the few samples at a fade's ends that round to zero)."""
    c, e = capture.astype(np.int64), export.astype(np.int64)

    def fits(k: int, seg: Segment) -> bool:
        index = k + seg.shift
        ref = e[index] if 0 <= index < len(e) else np.zeros(2, dtype=np.int64)
        return bool(np.all((np.abs(c[k]) <= np.abs(ref) + 1) & (c[k] * ref >= -1)))

    region = range(a.end, b.start)
    first_b = next((k for k in region if not fits(k, a)), b.start)
    last_a = next((k for k in reversed(region) if not fits(k, b)), a.end - 1)
    return last_a + a.shift, first_b + b.shift


def children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (from /proc: minimal systems have no pgrep)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def on_a_small_disk(disk: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `command` with a 256 KiB tmpfs mounted on `disk` (in a private mount namespace),
    then print what the disk holds."""
    disk.mkdir()
    prefix = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "-rm"]
    if (
        shutil.which("unshare") is None
        or subprocess.run(
            [*prefix, "mount", "-t", "tmpfs", "tmpfs", str(disk)], capture_output=True, check=False
        ).returncode
    ):
        pytest.skip("cannot mount a small disk here (unshare/mount not permitted)")
    inside = (
        f'mount -t tmpfs -o size=256k tmpfs {disk} && "$@"; status=$?; ls -A {disk}; exit $status'
    )
    return subprocess.run(
        [*prefix, "sh", "-c", inside, "-", *command], capture_output=True, text=True, check=False
    )
