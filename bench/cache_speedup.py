"""Cold vs warm export of a script with about five minutes of speech.

Prints whole-process wall times, their ratio, the real-time factor of each and the peak
RSS of the export process. Run: .venv/bin/python bench/cache_speedup.py [--format wav|mp3]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

SENTENCES = [
    "Notice the places where your body meets the ground.",
    "Let your shoulders soften, and your jaw release.",
    "There is nothing you need to do right now.",
    "Feel the breath moving in, and moving out.",
    "If your attention wanders, gently bring it back.",
    "Let the ground hold your weight.",
    "Notice any warmth, any coolness, any tingling.",
    "You can rest here for as long as you need.",
]


def script_text(minutes_of_speech: float) -> str:
    lines = ["title: Benchmark", "sections:"]
    words = 0
    section = 0
    while words / 150 < minutes_of_speech:  # ~150 spoken words a minute
        section += 1
        lines += [f"  - title: Part {section}", "    steps:"]
        for index, sentence in enumerate(SENTENCES):
            lines.append(f"      - say: {sentence} This is part {section}, line {index + 1}.")
            lines.append("      - pause: 2s")
            words += len(sentence.split()) + 6
    return "\n".join(lines) + "\n"


def export(script: Path, out: Path, cache: Path) -> tuple[float, int]:
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(cache)}
    command = [sys.executable, "-m", "guided_audio", "export", str(script), "-o", str(out)]
    began = time.perf_counter()
    subprocess.run([*command, "--force", "-q"], check=True, env=env)
    return time.perf_counter() - began, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--format", default="wav", choices=["wav", "mp3"])
    parser.add_argument("--minutes", type=float, default=5.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "bench.yaml"
        script.write_text(script_text(args.minutes))
        out = folder / f"bench.{args.format}"
        cold, _ = export(script, out, folder / "cache")
        warm, rss_kb = export(script, out, folder / "cache")
        wav = folder / "length.wav"
        export(script, wav, folder / "cache")
        with wave.open(str(wav)) as handle:
            seconds = handle.getnframes() / handle.getframerate()
    print(f"session length      {seconds / 60:.1f} min ({args.minutes:g} min of speech)")
    print(f"cold export         {cold:.2f} s   real-time factor {seconds / cold:.0f}x")
    print(f"warm export         {warm:.2f} s   real-time factor {seconds / warm:.0f}x")
    print(f"warm vs cold        {cold / warm:.1f}x faster")
    print(f"peak RSS (children) {rss_kb / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
