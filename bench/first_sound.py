"""First-sound latency of `play` for a long session, cold and warm.

Plays a generated session (default 60 minutes: speech, pauses, breathing, a bed) into an
ALSA file sink and times, from the process start, the first samples the device receives
and the first audible one (past the lead-in). Cold: an empty speech cache. Warm: after an
export of the same session (speech cached, loudness measured). With --listen S it plays on
for S seconds more (the sink takes audio as fast as it comes, so a whole session may pass)
and reports the player's peak RSS, its workers included. Prints a table.

Run: .venv/bin/python bench/first_sound.py [--minutes 60] [--runs 3] [--listen 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# {part} makes every line distinct (each part is new speech, as in a real session) with words
# of about the same length at any size: memory follows a line's length, and the sizes
# should differ in minutes only.
NAMES = ("amber", "birch", "cedar", "dune", "ember", "fern", "grove", "heath", "iris", "juniper",
         "kestrel", "linden")  # fmt: skip


def part_name(part: int) -> str:
    """A distinct two-word name for each part (144 of them: twelve hours)."""
    first, second = divmod(part - 1, len(NAMES))
    return f"{NAMES[first % len(NAMES)]} {NAMES[second]}"


LINES = [  # {part} makes every line distinct: each part is new speech, as in a real session
    "Notice in part {part} the places where your body meets the ground.",
    "Let your shoulders soften in part {part}, and your jaw release.",
    "There is nothing you need to do in part {part} right now.",
    "Feel the breath moving in, and moving out, for part {part}.",
    "If your attention wanders during part {part}, gently bring it back.",
    "You can rest in part {part} for as long as you need.",
]


def session(minutes: int) -> str:
    """Sections of about five minutes each: speech, a breathing step, a long silence."""
    out = ["title: Benchmark session", "music: {bed: drone, level: -22dB}", "sections:"]
    for part in range(max(1, minutes // 5)):
        out += [f"  - title: Part {part + 1}", "    steps:"]
        out += [f"      - say: {line.format(part=part_name(part + 1))}" for line in LINES]
        out += [
            "      - breathe: {pattern: resonance, cycles: 10, cues: tone}",
            "      - say: Rest now, and let the breath find its own pace.",
            "      - pause: 2m",
            '      - reflect: {question: "What do you notice now?", silence: 50s}',
        ]
    return "\n".join(out) + "\n"


def first_sound(
    script: Path, cache: Path, folder: Path, listen_s: float = 0.0
) -> tuple[float, float, float]:
    """Seconds to the device's first samples and to the first audible sample, and the
    player's peak RSS (MiB, its workers included) after `listen_s` more seconds of play."""
    capture = folder / "capture.raw"
    capture.unlink(missing_ok=True)
    config = folder / "asound.conf"
    config.write_text(
        f'pcm.!default {{ type file slave.pcm "null" file "{capture}" format "raw" }}\n'
        "pcm.null { type null }\n"
    )
    env = {
        **os.environ,
        "ALSA_CONFIG_PATH": str(config),
        "PULSE_SERVER": "unix:/nonexistent",
        "GUIDED_AUDIO_CACHE": str(cache),
        "GUIDED_AUDIO_HOME": str(folder / "home"),
    }
    began = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "guided_audio", "play", str(script), "-q"],
        env=env,
        stderr=subprocess.PIPE,
    )
    device = audible = float("nan")
    usage = None

    def ended() -> bool:  # reaped here (not by Popen) to keep its resource usage
        nonlocal usage
        if usage is None:
            pid, _, rusage = os.wait4(process.pid, os.WNOHANG)
            usage = rusage if pid else None
        return usage is not None

    try:
        while time.monotonic() - began < 120 and not ended():
            if capture.exists() and capture.stat().st_size:
                if device != device:
                    device = time.monotonic() - began
                data = np.frombuffer(capture.read_bytes(), dtype=np.int16)
                if np.abs(data).max(initial=0) > 30:
                    audible = time.monotonic() - began
                    break
            time.sleep(0.005)
        while time.monotonic() - began < audible + listen_s and not ended():
            time.sleep(0.05)
    finally:
        if not ended():
            process.kill()
            usage = os.wait4(process.pid, 0)[2]
        process.returncode = 0
        if process.stderr:
            process.stderr.close()
    assert usage is not None
    return device, audible, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--listen", type=float, default=0.0, help="seconds of play after it")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "bench.yaml"
        script.write_text(session(args.minutes))
        cold = []
        for run in range(args.runs):
            cold.append(first_sound(script, folder / f"cold-cache-{run}", folder, args.listen))
        warm_cache = folder / "warm-cache"
        subprocess.run(
            [sys.executable, "-m", "guided_audio", "export", str(script), "-q",
             "-o", str(folder / "bench.wav")],
            env={**os.environ, "GUIDED_AUDIO_CACHE": str(warm_cache)},
            check=True,
        )  # fmt: skip
        warm = [first_sound(script, warm_cache, folder, args.listen) for _ in range(args.runs)]
    print(f"first sound of `play`, {args.minutes}-minute session, median of {args.runs} runs")
    print(f"{'cache':<6} {'device starts':>14} {'first audible':>14} {'peak RSS':>10}")
    for name, runs in (("cold", cold), ("warm", warm)):
        device = statistics.median(r[0] for r in runs)
        audible = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        print(f"{name:<6} {device:>13.2f}s {audible:>13.2f}s {rss:>7.0f} MiB")


if __name__ == "__main__":
    main()
