"""A cold start is honest: the voice is cut once, apart from the speech cache (clearing the
cache costs no re-cut), and no process of a command, the cutter included, passes 300 MB."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PEAK_RSS_LIMIT_MIB = 300
SCRIPT = Path(__file__).parent.parent / "scripts" / "grounding.yaml"

# Run as a process of its own: its children's peak is the largest resident set of the
# command or of any process the command waited for (the cutter, the speech workers).
PEAK = """
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)
"""


def _peak_mib(command: list[str], env: dict[str, str]) -> int:
    done = subprocess.run(
        [sys.executable, "-c", PEAK, *command], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def _stages(models: Path) -> dict[str, tuple[int, int]]:
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in models.glob("*.onnx")}


@pytest.mark.slow
def test_a_cold_export_cuts_the_voice_apart_from_the_cache_and_stays_small(
    tmp_path: Path,
) -> None:
    cache, models = tmp_path / "audio_cache", tmp_path / "voices"
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(cache), "GUIDED_AUDIO_MODELS": str(models)}
    export = [sys.executable, "-m", "guided_audio", "export", str(SCRIPT), "-q", "--force"]
    out = ["-o", str(tmp_path / "grounding.mp3")]
    peak = _peak_mib([*export, *out], env)
    assert peak <= PEAK_RSS_LIMIT_MIB, f"{peak} MiB, the voice's cut included"
    cut = _stages(models)
    assert len(cut) == 3, cut  # front, flow, decoder
    assert not list(cache.rglob("*.onnx"))
    shutil.rmtree(cache)  # a user clears the speech cache
    peak = _peak_mib([*export, *out], env)
    assert peak <= PEAK_RSS_LIMIT_MIB, f"{peak} MiB"
    assert _stages(models) == cut  # the same files: nothing was cut again


@pytest.mark.slow
def test_a_cold_batch_of_clients_stays_small(tmp_path: Path) -> None:
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(tmp_path / "audio_cache"),
           "GUIDED_AUDIO_MODELS": str(tmp_path / "voices")}  # fmt: skip
    clients = tmp_path / "clients.csv"
    clients.write_text("folder,client\nc1,Sam\nc2,Alex\nc3,Robin\n")
    scripts = [str(SCRIPT), str(SCRIPT.with_name("quick-reset.yaml"))]
    batch = [sys.executable, "-m", "guided_audio", "export", *scripts, "-q",
             "--clients", str(clients), "-o", str(tmp_path / "library")]  # fmt: skip
    peak = _peak_mib(batch, env)
    assert peak <= PEAK_RSS_LIMIT_MIB, f"{peak} MiB, the voice's cut included"
    assert len(list((tmp_path / "library").glob("*/*.mp3"))) == 6
