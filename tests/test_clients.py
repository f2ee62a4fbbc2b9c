"""A practice's batch on this machine (`export --clients`, `share --clients`): the clients'
list checked and located, every client's files in their own folder, speech made once for
the whole batch, a manifest that `--resume` trusts, failures that stop no one, and nothing
half-written however a batch ends."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import RATE, cli, interrupt_when_ready, read_wav
from guided_audio.clinic.jobs import lines, make_and_send
from guided_audio.clinic.practice import BatchSettings, plan_jobs
from guided_audio.session import Options
from guided_audio.speech.cache import SpeechCache
from guided_audio.speech.speaker import Speaker
from test_sound import write_wav

FIXTURES = Path(__file__).parent / "fixtures" / "clients"
WELCOME = """\
title: Welcome
variables:
  client: friend
sections:
  - title: Arriving
    steps:
      - say: Welcome, {client}.
      - pause: 2s
      - say: Let your shoulders soften.
"""
PLACE = """\
title: A place
variables:
  place: the garden
sections:
  - title: The place
    steps:
      - say: Picture {place}.
      - sound: sounds/chime.wav
      - pause: 3s
      - say: Let your shoulders soften.
"""
PLAIN = """\
title: Plain
sections:
  - title: Breath
    steps:
      - say: Breathe out slowly.
      - pause: 1s
"""
CLIENTS = "folder,client,place\nc01,Sam,the sea\nc02,Alex,\nc03,Robin,a forest\n"


def _chime(path: Path, hz: float = 660.0) -> None:
    """A short tone, as a script's sound file."""
    tone = 0.3 * np.sin(2 * np.pi * hz * np.arange(RATE // 4) / RATE) * np.hanning(RATE // 4)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_wav(path, tone)


def _scripts(folder: Path) -> Path:
    scripts = folder / "scripts"
    scripts.mkdir()
    _chime(scripts / "sounds" / "chime.wav")
    for name, text in (("welcome", WELCOME), ("place", PLACE), ("plain", PLAIN)):
        (scripts / f"{name}.yaml").write_text(text)
    return scripts


def _batch(folder: Path, *args: str, env: dict[str, str] | None = None) -> list[str]:
    return [
        sys.executable,
        "-m",
        "guided_audio",
        "export",
        str(folder / "scripts"),
        "--clients",
        str(folder / "clients.csv"),
        "-o",
        str(folder / "library"),
        *args,
    ]


def _run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


def leftovers(out: Path) -> list[str]:
    """Anything in a batch folder but whole files and the batch's own records."""
    found = []
    for path in out.rglob("*"):
        name = path.relative_to(out).as_posix()
        if path.is_dir():
            if path.parent != out or path.name.startswith("."):
                found.append(name)
        elif name not in ("batch.json", ".batch.lock") and (
            path.name.startswith(".") or path.parent == out
        ):
            found.append(name)
    return sorted(found)


def test_the_leftover_check_sees_a_staging_folder_and_a_temp_file(tmp_path: Path) -> None:
    (tmp_path / "c01").mkdir()
    (tmp_path / "c01" / "welcome.mp3").write_bytes(b"whole")
    (tmp_path / "batch.json").write_text("{}")
    assert leftovers(tmp_path) == []
    (tmp_path / ".batch-1a2b").mkdir()
    (tmp_path / "c01" / ".welcome.x1y2.tmp").write_bytes(b"half")
    assert leftovers(tmp_path) == [".batch-1a2b", "c01/.welcome.x1y2.tmp"]


# --- the clients' list: one located message per problem, nothing made --------------------
BAD = {
    "missing-folder": "clients.csv:1:1: no 'folder' column: it names each client's folder of files",
    "duplicate-folder": "clients.csv:3:1: folder 'A' is also on line 2: one client each",
    "separator": "clients.csv:2:1: folder 'sam/notes' has a path separator: a folder is one name",
    "dot-dot": "clients.csv:2:5: folder '..' starts with '.': a folder is a plain name",
    "unused-variable": "clients.csv:1:21: variable 'mood' is not used by any of these scripts "
    "(they use: client, place)",
    "unknown-column": "clients.csv:1:8: unknown column 'clinet' (columns: folder, length, client, "
    "place) (did you mean 'client'?)",
    "bad-length": "clients.csv:2:3: twelve: expected a duration like 12m, 1h05m or 90s",
    "short-row": "clients.csv:3:1: 1 cells where the header has 2",
    "empty-folder": "clients.csv:2:1: the folder is empty: every client needs one",
    "unclosed-quote": "clients.csv:2:1: not a CSV row: unexpected end of data",
    "manifest-folder": "clients.csv:2:1: folder 'batch.json' is the batch's own record: "
    "choose another name",
    "semicolons": "clients.csv:2:21: 9x: expected a duration like 12m, 1h05m or 90s",
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_a_bad_clients_list_is_located_and_nothing_is_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    _scripts(tmp_path)
    shutil.copy(FIXTURES / f"{name}.csv", tmp_path / "clients.csv")
    monkeypatch.chdir(tmp_path)
    result = cli("export", "scripts", "--clients", "clients.csv", "-o", "library")
    assert result.exit_code == 2
    assert result.stderr.strip() == BAD[name]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "library").exists()


def test_every_problem_of_a_list_is_told_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text("folder,clinet\nsam/notes,Sam\n..,Alex\n")
    monkeypatch.chdir(tmp_path)
    result = cli("export", "scripts", "--clients", "clients.csv", "-o", "library")
    assert result.exit_code == 2
    assert [line.split(": ")[0] for line in result.stderr.splitlines()] == [
        "clients.csv:1:8",
        "clients.csv:2:1",
        "clients.csv:3:1",
    ]


def test_resume_and_cluster_need_clients(tmp_path: Path) -> None:
    script = _scripts(tmp_path) / "plain.yaml"
    result = cli("export", str(script), "-o", str(tmp_path / "x.mp3"), "--resume")
    assert result.exit_code == 2
    assert result.stderr.strip() == "--resume, --cluster and --send-files go with --clients"


# --- a batch -------------------------------------------------------------------------------
def _said(vtt: Path) -> str:
    """A transcript's words, without their times."""
    return re.sub(r"<[^>]+>", "", vtt.read_text())


def _entries(cache: Path) -> int:
    return sum(1 for _ in cache.rglob("*.wav"))


def _manifest(out: Path) -> dict[str, dict[str, object]]:
    files: dict[str, dict[str, object]] = json.loads((out / "batch.json").read_text())["files"]
    return files


def _times(out: Path) -> dict[str, int]:
    return {
        p.relative_to(out).as_posix(): p.stat().st_mtime_ns for p in out.glob("*/*") if p.is_file()
    }


@pytest.mark.slow
def test_a_batch_makes_each_clients_library_with_speech_made_once(tmp_path: Path) -> None:
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text(CLIENTS)
    cache = tmp_path / "cache"
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(cache)}
    done = _run(_batch(tmp_path, "--format", "wav"), env)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "library"
    # 3 clients x 3 scripts, each with its chapters and transcript; no name on disk
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["c01", "c02", "c03"]
    for client in ("c01", "c02", "c03"):
        assert sorted(p.name for p in (out / client).iterdir()) == sorted(
            f"{s}{ext}"
            for s in ("place", "plain", "welcome")
            for ext in (".wav", ".vtt", ".chapters.json")
        )
    paths = " ".join(p.as_posix() for p in out.rglob("*"))
    assert not re.search("sam|alex|robin|sea|forest", paths, re.IGNORECASE)
    assert leftovers(out) == []
    # each client's own words, and the script's default where a cell is empty
    assert "Welcome, Sam." in _said(out / "c01" / "welcome.vtt")
    assert "Picture the garden." in _said(out / "c02" / "place.vtt")
    # Lines that no variable changes (the shoulders, the breath) are made once for all:
    # 3 welcomes + 3 places + 2 shared lines. The cache holds exactly those.
    distinct = 3 + 3 + 2
    assert "speech: 8 lines synthesised of 8 distinct (1.00)" in done.stderr
    assert _entries(cache) == distinct
    # every file recorded with its hash; the manifest is the owner's only
    files = _manifest(out)
    assert len(files) == 27
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert stat.S_IMODE((out / "batch.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "c01").stat().st_mode) == 0o700
    # a client's file is the plain export of that script with their variables
    single = tmp_path / "single.wav"
    welcome = tmp_path / "scripts" / "welcome.yaml"
    alone = [
        sys.executable,
        "-m",
        "guided_audio",
        "export",
        str(welcome),
        "--var",
        "client=Sam",
        "-o",
        str(single),
        "-q",
    ]
    assert _run(alone, env).returncode == 0
    assert (read_wav(single) == read_wav(out / "c01" / "welcome.wav")).all()

    # --- resume: nothing to do; a changed script; a lost file --------------------------
    before = _times(out)
    again = _run(_batch(tmp_path, "--format", "wav", "--resume"), env)
    assert again.returncode == 0, again.stderr
    assert "0 made, 9 up to date, 0 failed" in again.stderr
    assert _times(out) == before
    refused = _run(_batch(tmp_path, "--format", "wav"), env)
    assert refused.returncode == 2
    assert refused.stderr.strip().endswith(
        "(27 files of this batch do): --resume makes only what is missing or changed, "
        "--force makes all again"
    )
    (tmp_path / "scripts" / "plain.yaml").write_text(PLAIN.replace("1s", "2s"))
    (out / "c02" / "welcome.wav").unlink()
    redone = _run(_batch(tmp_path, "--format", "wav", "--resume"), env)
    assert redone.returncode == 0, redone.stderr
    assert "4 made, 5 up to date, 0 failed" in redone.stderr
    changed = {name for name, time in _times(out).items() if before.get(name) != time}
    assert changed == {
        f"{c}/plain{ext}"
        for c in ("c01", "c02", "c03")
        for ext in (".wav", ".vtt", ".chapters.json")
    } | {"c02/welcome.wav", "c02/welcome.vtt", "c02/welcome.chapters.json"}
    assert "speech: 0 lines synthesised" in redone.stderr


@pytest.mark.slow
def test_a_failing_client_is_reported_and_the_others_finish(tmp_path: Path) -> None:
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text("folder,client,length\nc01,Sam,\nc02,Alex,2h\n")
    done = _run(_batch(tmp_path), {**os.environ})
    assert done.returncode == 2
    failed = [line for line in done.stderr.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 3  # every script of c02: none can be two hours long
    assert failed[0].startswith("FAILED c02/")
    assert "--length 2h: this session can be" in failed[0]
    assert "3 made, 3 failed" in done.stderr
    out = tmp_path / "library"
    assert sorted(p.name for p in (out / "c01").glob("*.mp3")) == [
        "place.mp3",
        "plain.mp3",
        "welcome.mp3",
    ]
    assert not (out / "c02").exists() or not list((out / "c02").iterdir())
    assert leftovers(out) == []


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_batch_leaves_whole_files_and_resume_finishes_it(
    tmp_path: Path, signum: int
) -> None:
    _scripts(tmp_path)
    clients = "folder,client\n" + "".join(f"c{n:02},Client{n}\n" for n in range(8))
    (tmp_path / "clients.csv").write_text(clients)
    out = tmp_path / "library"
    process = subprocess.Popen(
        _batch(tmp_path, "-j", "2"), stderr=subprocess.PIPE, text=True, start_new_session=False
    )
    stderr = interrupt_when_ready(
        process, lambda: (out / "batch.json").exists(), "the batch", signum
    )
    assert process.returncode != 0, stderr
    assert "Traceback" not in stderr
    assert leftovers(out) == []
    for name, entry in _manifest(out).items():  # what is recorded is whole
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    done = _run(_batch(tmp_path, "--resume"), {**os.environ})
    assert done.returncode == 0, done.stderr
    assert len(_manifest(out)) == 8 * 3 * 3
    assert leftovers(out) == []


@pytest.mark.slow
def test_two_batches_into_one_folder_keep_each_others_records(tmp_path: Path) -> None:
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text(
        "folder,client\n" + "".join(f"a{n},A{n}\n" for n in range(4))
    )
    other = tmp_path / "other"
    other.mkdir()
    (other / "clients.csv").write_text(
        "folder,client\n" + "".join(f"b{n},B{n}\n" for n in range(4))
    )
    (other / "scripts").symlink_to(tmp_path / "scripts")
    second = _batch(tmp_path, "-j", "1")
    second[second.index("--clients") + 1] = str(other / "clients.csv")
    processes = [
        subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        for command in (_batch(tmp_path, "-j", "1"), second)
    ]
    for process in processes:
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr
    out = tmp_path / "library"
    files = _manifest(out)
    assert len(files) == 8 * 3 * 3
    for name, entry in files.items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert leftovers(out) == []


@pytest.mark.slow
def test_share_makes_a_bundle_per_client(tmp_path: Path) -> None:
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text(CLIENTS)
    command = [
        sys.executable,
        "-m",
        "guided_audio",
        "share",
        str(tmp_path / "scripts"),
        "--clients",
        str(tmp_path / "clients.csv"),
        "-o",
        str(tmp_path / "shared"),
    ]
    done = _run(command, {**os.environ})
    assert done.returncode == 0, done.stderr
    indexes = done.stdout.split()
    assert len(indexes) == 3
    for client, name in (("c01", "Sam"), ("c02", "Alex"), ("c03", "Robin")):
        (bundle,) = (tmp_path / "shared" / client).glob("sessions-*")
        assert f"{bundle}/index.html" in indexes
        assert f"Welcome, {name}." in _said(bundle / "welcome.vtt")
    again = _run(command, {**os.environ})
    assert again.returncode == 2
    assert again.stderr.count("already holds a bundle") == 3
    assert _run([*command, "--resume"], {**os.environ}).returncode == 0


@pytest.mark.slow
def test_a_job_sent_to_a_worker_without_the_scripts_brings_them(tmp_path: Path) -> None:
    """What a cluster's worker without the shared folders gets: the job, its speech and its
    sources' bytes; it makes the same files though the scripts are nowhere on its disk."""
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text(CLIENTS)
    cache = tmp_path / "cache"
    done = _run(
        _batch(tmp_path, "--format", "wav"), {**os.environ, "GUIDED_AUDIO_CACHE": str(cache)}
    )
    assert done.returncode == 0, done.stderr
    settings = BatchSettings(tmp_path / "clients.csv", tmp_path / "elsewhere", "wav")
    options = Options(cache_dir=cache)
    scripts = sorted((tmp_path / "scripts").glob("*.yaml"))
    job = next(j for j in plan_jobs(scripts, settings, options, [])
               if j.folder == "c01" and j.name == "place.wav")  # fmt: skip
    speaker = Speaker(SpeechCache(cache))
    entries = {}
    for phrase in lines(job):
        data = speaker.cache.raw(speaker.key(phrase))
        assert data is not None
        entries[speaker.key(phrase)] = data
    files = {sha: Path(path).read_bytes() for path, sha in job.sources}
    assert len(files) == 2  # the script and its sound
    (tmp_path / "scripts").rename(tmp_path / "moved")
    made = make_and_send(job, entries, files)
    assert made.error is None and made.sent is not None
    library = tmp_path / "library"
    assert made.sent == {name: (library / name).read_bytes() for name in job.files}


@pytest.mark.slow
def test_a_batch_in_a_terminal_shows_files_audio_minutes_and_an_eta(tmp_path: Path) -> None:
    import pexpect

    _scripts(tmp_path)
    # enough files that the ETA shows (after a second of them)
    (tmp_path / "clients.csv").write_text(
        "folder,client\n" + "".join(f"c{n},C{n}\n" for n in range(6))
    )
    command = _batch(tmp_path)
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(tmp_path / "cache"), "COLUMNS": "150"}
    child = pexpect.spawn(command[0], command[1:], env=env, encoding="utf-8", timeout=300,
                          dimensions=(24, 150))  # fmt: skip
    child.expect(r"Exporting 18 files")
    # files done, an ETA, and the audio minutes made of those expected
    child.expect(r"\b([1-9]|1[0-7])/18\s+\d\d:\d\d:\d\d\s+\d+\.\d of ~\d+\.\d audio min")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert re.search(r"18 made, 0 failed; [\d.]+ min of audio", child.before or "")
