"""Render an hour-long session (speech, bells and a noise bed) and report the cost.

Prints real-time factors for the loudness measurement and the final render, and the
process's peak RSS: memory stays flat because every stage streams in blocks.
Run: .venv/bin/python bench/render_hour.py [--minutes 60]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from guided_audio.mix.gain import loudness_gain
from guided_audio.mix.master import Master
from guided_audio.mix.mixer import Mixer
from guided_audio.session import Options, Silent, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    steps = "".join(
        f"      - say: Minute {m % 5}. Notice the breath.\n"
        "      - pause: 55s\n      - bell: chime\n"
        for m in range(args.minutes)
    )
    text = f"title: Hour\nmusic: {{bed: noise}}\nsections:\n  - title: A\n    steps:\n{steps}"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hour.yaml"
        script.write_text(text)
        cache = Path(tmp) / "cache"
        # Speech is rendered in a child process, so this one's RSS is the mix alone.
        subprocess.run(
            [sys.executable, "-m", "guided_audio", "plan", "-q", str(script)],
            env={**os.environ, "GUIDED_AUDIO_CACHE": str(cache)},
            check=True,
            stdout=subprocess.DEVNULL,
        )
        options = Options(cache_dir=cache, loudness_lufs=None)
        rendered = render(script, options, Silent())
        seconds = rendered.timeline.seconds
        began = time.perf_counter()
        mixer = rendered.source
        assert isinstance(mixer, Mixer)  # loudness off: the raw mixer
        gain = loudness_gain(mixer, -16.0)
        measuring = time.perf_counter() - began
        began = time.perf_counter()
        for _ in Master(mixer, gain).blocks():
            pass
        rendering = time.perf_counter() - began
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"session length        {seconds / 60:.1f} min")
    print(f"loudness measurement  {measuring:.1f} s   real-time factor {seconds / measuring:.0f}x")
    print(f"final render          {rendering:.1f} s   real-time factor {seconds / rendering:.0f}x")
    print(f"peak RSS              {rss:.0f} MiB (the whole hour as float stereo: 1270 MiB)")


if __name__ == "__main__":
    main()
