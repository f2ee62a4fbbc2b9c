"""A practice's batch (`export --clients`), cold: S scripts x N clients on this machine's
process pool and on a Dask cluster on loopback (a `dask scheduler` and one `dask worker
--nthreads 1` a core), each from an empty speech cache (the voice already cut).

For each it reports wall seconds, files a minute, audio minutes per CPU minute (the CPU
of the command and everything it waited for; on the cluster, of the workers too), speech
reuse (lines synthesised / distinct lines: 1.00 when each line is made once), and the
Dask run's overhead against the local pool. Called by `compare.py --clients N`.
"""

from __future__ import annotations

import os
import re
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from first_sound import part_name, session

SCRIPTS = 4
MINUTES = 5  # each script's length
TICKS = os.sysconf("SC_CLK_TCK")


def _scripts(folder: Path, count: int) -> Path:
    """`count` sessions of MINUTES, each greeting the client by name twice."""
    library = folder / "clinic-scripts"
    library.mkdir()
    for n in range(count):
        text = session(MINUTES).replace("Benchmark session", f"Clinic session {n}")
        text = text.replace(part_name(1), part_name(1 + n * 13))
        text = text.replace("sections:", "variables:\n  client: friend\nsections:", 1)
        text = text.replace("      - say: Rest now,", "      - say: Rest now, {client},", 1)
        text = text.replace("    steps:\n", "    steps:\n      - say: Welcome, {client}.\n", 1)
        (library / f"session-{n}.yaml").write_text(text)
    return library


def _clients(folder: Path, count: int) -> Path:
    path = folder / "clients.csv"
    names = [part_name(n + 1).split()[0].title() + str(n) for n in range(count)]
    path.write_text("folder,client\n" + "".join(f"c{n:03},{name}\n"
                                               for n, name in enumerate(names)))  # fmt: skip
    return path


def _cpu_s(pid: int) -> float:
    """CPU seconds of a process, its live descendants and the children they waited for."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat.parent.name) == pid or _descends(int(stat.parent.name), pid):
            total += sum(int(v) for v in fields[11:15]) / TICKS  # utime stime cutime cstime
    return total


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError):
            return False
        if pid == ancestor:
            return True
    return False


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cluster(folder: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    address = f"tcp://127.0.0.1:{port}"
    dask = str(Path(sys.executable).parent / "dask")
    log = (folder / "dask.log").open("wb")
    scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    worker = [dask, "worker", address, "--nthreads", "1"]
    started = [
        subprocess.Popen([*command, "--no-dashboard"], stdout=log, stderr=log,
                         start_new_session=True)
        for command in [scheduler, *[worker] * (os.cpu_count() or 1)]
    ]  # fmt: skip
    import distributed

    with distributed.Client(address, timeout=60) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(len(started) - 1, timeout=60)
    return address, started


def measure_clients(folder: Path, clients: int, scripts: int = SCRIPTS) -> list[str]:
    """The table of a batch of `scripts` x `clients`, local and on a loopback cluster."""
    library, roster = _scripts(folder, scripts), _clients(folder, clients)
    rows: dict[str, tuple[float, float, str]] = {}
    address, cluster = _cluster(folder)
    try:
        for name, extra in (("local pool", []), ("Dask, loopback", ["--cluster", address])):
            cache = folder / f"clinic-cache-{len(rows)}"
            env = {**os.environ, "GUIDED_AUDIO_CACHE": str(cache)}
            command = [sys.executable, "-m", "guided_audio", "export", str(library),
                       "--clients", str(roster), "-o", str(folder / f"clinic-{len(rows)}"),
                       "--no-transcript", *extra]  # fmt: skip
            workers_before = sum(_cpu_s(p.pid) for p in cluster[1:])
            before, began = _children_cpu_s(), time.monotonic()
            done = subprocess.run(command, env=env, stderr=subprocess.PIPE, text=True)
            wall, cpu = time.monotonic() - began, _children_cpu_s() - before
            if done.returncode != 0:
                raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr}")
            cpu += sum(_cpu_s(p.pid) for p in cluster[1:]) - workers_before
            rows[name] = (wall, cpu, done.stderr)
    finally:
        for process in cluster:
            os.killpg(process.pid, signal.SIGTERM)
        for process in cluster:
            process.wait()
    return _table(rows, clients, scripts)


def _table(rows: dict[str, tuple[float, float, str]], clients: int, scripts: int) -> list[str]:
    lines = [f"### A practice's batch: {scripts} scripts x {clients} clients, cold", "",
             "| run | seconds | files a minute | audio min per CPU min | speech reuse |",
             "| --- | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for name, (wall, cpu, said) in rows.items():
        summary = said.strip().splitlines()[-1]
        made = int(re.search(r"(\d+) made", summary)[1])  # type: ignore[index]
        minutes = float(re.search(r"([\d.]+) min of audio", summary)[1])  # type: ignore[index]
        reuse = re.search(r"\(([\d.]+)\)$", summary)[1]  # type: ignore[index]
        per_cpu = minutes / (cpu / 60) if cpu else float("nan")
        lines.append(
            f"| {name} | {wall:.1f} | {made / (wall / 60):.1f} | {per_cpu:.0f} | {reuse} |"
        )
    local, dask = rows["local pool"][0], rows["Dask, loopback"][0]
    lines += ["", f"Dask overhead against the local pool (aim: under 10%): "
              f"{(dask / local - 1) * 100:+.0f}%", ""]  # fmt: skip
    return lines
