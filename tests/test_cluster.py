"""A batch on a real Dask cluster: a `dask scheduler` and two `dask worker --nthreads 1`
processes on loopback. Its files equal the local run's byte for byte, whether workers write
into the shared folders or send their files back; a worker lost mid-batch has its jobs run
elsewhere; a scheduler that does not answer is one line."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from conftest import cli
from test_clients import leftovers

DASK = str(Path(sys.executable).parent / "dask")
SCRIPTS = ("welcome", "place", "plain")
SCRIPT = """\
title: {name}
variables:
  client: friend
sections:
  - title: One
    steps:
      - say: {line}, {{client}}.
      - pause: 2s
      - say: Let the breath settle by itself.
"""
CLIENTS = "folder,client\n" + "".join(f"c{n},Client{n}\n" for n in range(4))


@dataclass
class Cluster:
    address: str
    workers: list[subprocess.Popen[bytes]]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A scheduler and two one-thread workers, each in a session of its own (so a worker,
    its nanny included, can be killed as a machine is lost)."""
    address = f"tcp://127.0.0.1:{_free_port()}"
    port = address.rsplit(":", 1)[1]
    logs = tmp_path / "dask-logs"
    logs.mkdir()
    commands = {
        "scheduler": [DASK, "scheduler", "--host", "127.0.0.1", "--port", port],
        **{f"worker-{n}": [DASK, "worker", address, "--nthreads", "1"] for n in range(2)},
    }
    processes: dict[str, subprocess.Popen[bytes]] = {}
    with contextlib.ExitStack() as files:
        try:
            for name, command in commands.items():
                log = files.enter_context((logs / f"{name}.log").open("wb"))
                processes[name] = subprocess.Popen(
                    [*command, "--no-dashboard"], stdout=subprocess.DEVNULL, stderr=log,
                    start_new_session=True,
                )  # fmt: skip
            _wait_for_workers(address, 2)
            yield Cluster(address, [processes["worker-0"], processes["worker-1"]])
        finally:
            _stop(list(processes.values()))


def _stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _wait_for_workers(address: str, count: int) -> None:
    import distributed

    client: Any = distributed.Client
    with client(address, timeout=60) as connected:
        connected.wait_for_workers(count, timeout=60)


def _scripts(folder: Path) -> None:
    scripts = folder / "scripts"
    scripts.mkdir()
    for name, line in zip(SCRIPTS, ("Welcome", "Hello", "Good evening"), strict=True):
        (scripts / f"{name}.yaml").write_text(SCRIPT.format(name=name, line=line))
    (folder / "clients.csv").write_text(CLIENTS)


def _export(folder: Path, out: str, cache: str, *args: str) -> subprocess.CompletedProcess[str]:
    clients = str(folder / "clients.csv")
    command = [sys.executable, "-m", "guided_audio", "export", str(folder / "scripts"),
               "--clients", clients, "-o", str(folder / out), *args]  # fmt: skip
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(folder / cache)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def _files(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in out.glob("*/*")}


@pytest.mark.slow
def test_a_cluster_makes_the_local_runs_files_byte_for_byte(
    tmp_path: Path, cluster: Cluster
) -> None:
    _scripts(tmp_path)
    local = _export(tmp_path, "local", "cache-local")
    assert local.returncode == 0, local.stderr
    shared = _export(tmp_path, "shared", "cache-shared", "--cluster", cluster.address)
    assert shared.returncode == 0, shared.stderr
    sent = _export(tmp_path, "sent", "cache-sent", "--cluster", cluster.address, "--send-files")
    assert sent.returncode == 0, sent.stderr
    expected = _files(tmp_path / "local")
    assert len(expected) == 4 * 3 * 3  # 4 clients x 3 scripts x (audio, transcript, chapters)
    for run in ("shared", "sent"):
        made = _files(tmp_path / run)
        assert sorted(made) == sorted(expected)
        assert [name for name in expected if made[name] != expected[name]] == []
        assert leftovers(tmp_path / run) == []
    # Every distinct line made once (the greetings per client, the shared line once), on
    # the cluster too; the workers that shared no folder sent theirs back into this cache.
    for done, cache in ((local, "cache-local"), (shared, "cache-shared"), (sent, "cache-sent")):
        counted = re.search(
            r"speech: (\d+) lines synthesised of (\d+) distinct \(1.00\)", done.stderr
        )
        assert counted is not None, done.stderr
        assert int(counted[1]) == int(counted[2]) >= 13
        assert sum(1 for _ in (tmp_path / cache).rglob("*.wav")) == int(counted[1])


@pytest.mark.slow
def test_a_worker_lost_mid_batch_has_its_jobs_run_elsewhere(
    tmp_path: Path, cluster: Cluster
) -> None:
    _scripts(tmp_path)
    (tmp_path / "clients.csv").write_text(
        "folder,client\n" + "".join(f"c{n},Client{n}\n" for n in range(10))
    )
    out = tmp_path / "library"
    env = {**os.environ, "GUIDED_AUDIO_CACHE": str(tmp_path / "cache")}
    command = [sys.executable, "-m", "guided_audio", "export", str(tmp_path / "scripts"),
               "--clients", str(tmp_path / "clients.csv"), "-o", str(out),
               "--cluster", cluster.address]  # fmt: skip
    batch = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 300
    while not (out / "batch.json").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert batch.poll() is None, "the batch ended before a worker could be lost"
    os.killpg(cluster.workers[0].pid, signal.SIGKILL)  # the machine is gone, nanny and all
    _, stderr = batch.communicate(timeout=600)
    assert batch.returncode == 0, stderr
    assert "30 made, 0 failed" in stderr
    assert len(list(out.glob("*/*.mp3"))) == 30
    for audio in out.glob("*/*.mp3"):  # every file whole: it decodes to its end
        probe = subprocess.run(["ffmpeg", "-v", "error", "-i", str(audio), "-f", "null", "-"],
                               capture_output=True, text=True)  # fmt: skip
        assert probe.returncode == 0 and probe.stderr == "", (audio, probe.stderr)
    assert leftovers(out) == []


@pytest.mark.parametrize("given", ["--cluster", "GUIDED_AUDIO_CLUSTER"])
def test_a_scheduler_that_does_not_answer_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    _scripts(tmp_path)
    address = f"tcp://127.0.0.1:{_free_port()}"
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "2s")
    if given == "GUIDED_AUDIO_CLUSTER":
        monkeypatch.setenv(given, address)
    done = _export(tmp_path, "library", "cache", *([given, address] if given[0] == "-" else []))
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"cannot reach the Dask scheduler at {address}: no answer within 2s; start one there "
        "with `dask scheduler`, or check --cluster or GUIDED_AUDIO_CLUSTER"
    ]
    assert not (tmp_path / "library").exists()


@pytest.mark.parametrize("address", ["nonsense:::", "foo://host:1", "tcp://"])
def test_what_is_not_an_address_is_refused(tmp_path: Path, address: str) -> None:
    _scripts(tmp_path)
    done = _export(tmp_path, "library", "cache", "--cluster", address)
    assert done.returncode == 2
    assert done.stderr == f"--cluster {address}: not a scheduler's address, like tcp://HOST:8786\n"
    assert not (tmp_path / "library").exists()


def test_without_the_cluster_extra_the_fix_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _scripts(tmp_path)
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    result = cli("export", str(tmp_path / "scripts"), "--clients", str(tmp_path / "clients.csv"),
                 "-o", str(tmp_path / "library"), "--cluster", "tcp://127.0.0.1:8786")  # fmt: skip
    assert result.exit_code == 1
    assert result.stderr == (
        "--cluster needs Dask's distributed, which is not installed: "
        "pip install 'guided-audio[cluster]'\n"
    )
    assert not (tmp_path / "library").exists()
