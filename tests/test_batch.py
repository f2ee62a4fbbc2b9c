"""Batches for each client: a folder exported at once, names from --var, failures apart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import onnxruntime
import pytest

from conftest import cli, interrupt_when_ready, write
from guided_audio import batch, session
from guided_audio.export.naming import MAX_NAME, safe_name
from guided_audio.script.model import Phrase
from guided_audio.session import Options, Report, Silent, timeline
from guided_audio.speech import registry, workers
from guided_audio.speech.speaker import Speaker

SESSION = """\
title: {title}
variables: {{client: friend}}
sections:
  - title: Only
    steps:
      - say: Hello, {{client}}.
"""


def test_a_folder_exports_in_parallel_and_a_failure_stays_apart(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    write(library, SESSION.format(title="Box"), "box-breathing.yaml")
    write(library, SESSION.format(title="Ground"), "grounding.yaml")
    write(
        library, "title: Bare\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n", "bare.yaml"
    )
    write(library, "title: Bad\nsections:\n  - title: A\n    steps:\n      - pause: 7 parsecs\n",
          "bad.yaml")  # fmt: skip
    out = tmp_path / "out"
    result = cli("export", str(library), "-o", str(out), "--var", "client=Sam", "-j", "2")
    assert result.exit_code == 2, result.output
    lines = result.stdout.splitlines()
    names = ["bare-sam.mp3", "box-breathing-sam.mp3", "grounding-sam.mp3"]
    assert [line.split("  ")[0] for line in lines] == [str(out / n) for n in names]
    assert all(" 1 chapter  " in line and line.endswith(" dBTP") for line in lines)
    assert result.stderr.splitlines() == [
        f"FAILED {library / 'bad.yaml'}: {library / 'bad.yaml'}:5:16: expected a duration "
        "like 7s or 1m30s, found '7 parsecs' (7, 7s, 500ms, 2m, 1h)",
        "3 exported, 1 failed",
    ]
    written = sorted(p.name for p in out.iterdir())
    sidecars = [n.replace(".mp3", suffix) for n in names for suffix in (".chapters.json", ".vtt")]
    assert written == sorted([*names, *sidecars])


@pytest.mark.parametrize(("jobs", "forked"), [pytest.param("1", False, id="one"),
                                             pytest.param("2", True, id="two")])  # fmt: skip
def test_a_batch_takes_its_workers_from_guided_audio_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str, forked: bool
) -> None:
    monkeypatch.setenv("GUIDED_AUDIO_JOBS", jobs)
    monkeypatch.setattr(batch, "export", _pid_as_export)
    scripts = [write(tmp_path, SESSION.format(title=n), f"{n}.yaml") for n in ("a", "b")]
    folder = tmp_path / "out"
    outcomes = batch.export_many(scripts, folder, "wav", Options())
    pids = {int(o.report.path.name) for o in outcomes if o.report is not None}
    assert len(pids) >= 1
    assert (pids != {os.getpid()}) is forked, pids


def _pid_as_export(path: Path, out: Path, *_: object) -> tuple[Path, None, Report]:
    """An export that only says which process made it."""
    return out, None, Report(Path(str(os.getpid())), 0.0, 0, 0.0, 0.0)


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: one thread either way")
@pytest.mark.parametrize(
    ("jobs", "threads"),
    [pytest.param("1", 1, id="one-core"), pytest.param(None, None, id="every-core")],
)
@pytest.mark.slow
def test_speech_made_in_process_keeps_to_guided_audio_jobs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str | None, threads: int | None
) -> None:
    # GUIDED_AUDIO_JOBS=1 asks for one core: the voice then infers on one thread, not on
    # onnxruntime's pool of every core (None: onnxruntime's choice).
    if jobs is None:
        monkeypatch.delenv("GUIDED_AUDIO_JOBS", raising=False)
    else:
        monkeypatch.setenv("GUIDED_AUDIO_JOBS", jobs)
    registry.engine("piper").unload()  # loaded again below, with the threads asked for
    asked: list[int | None] = []
    real = onnxruntime.InferenceSession

    def spy(model: str, options: onnxruntime.SessionOptions, **kwargs: object) -> object:
        threads = options.intra_op_num_threads
        if not str(model).endswith(".tmp"):  # not the cutter's own
            asked.append(threads or None)  # 0: onnxruntime's choice
        return real(model, options, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", spy)
    script = write(tmp_path, SESSION.format(title="One"), "one.yaml")
    timeline(script, Options(cache_dir=tmp_path / "cache"), Silent())
    assert asked == [threads] * 3  # front, flow and decoder


def _spy_synthesis(monkeypatch: pytest.MonkeyPatch, log: Path) -> None:
    """Each call that makes speech appends its pid and phrases to `log` (from any process)."""
    real = workers.speaking

    @contextmanager
    def spy(
        speaker: Speaker, phrases: list[Phrase], advance: Callable[[int], None]
    ) -> Iterator[None]:
        with log.open("a") as out:
            out.write(f"{os.getpid()} {sorted(p.text for p in phrases)}\n")
        with real(speaker, phrases, advance):
            yield

    monkeypatch.setattr(session, "speaking", spy)


SPOKEN = "title: {title}\nsections:\n  - title: A\n    steps:\n      - say: {line}\n"


@pytest.mark.slow
def test_a_batch_makes_all_its_speech_at_once_before_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One pool for every file's speech (the workers stay busy across files): each file's
    # export then only mixes and encodes.
    monkeypatch.setenv("GUIDED_AUDIO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GUIDED_AUDIO_JOBS", "2")
    log = tmp_path / "synthesis.log"
    _spy_synthesis(monkeypatch, log)
    library = tmp_path / "library"
    library.mkdir()
    write(library, SPOKEN.format(title="One", line="Rest here. Soften."), "one.yaml")
    write(library, SPOKEN.format(title="Two", line="Breathe in. Let go."), "two.yaml")
    write(library, "title: Bad\nsections: []\n", "bad.yaml")
    result = cli("export", str(library), "-o", str(tmp_path / "out"), "--format", "wav")
    assert result.exit_code == 2, result.output
    calls = log.read_text().splitlines()
    assert calls == [f"{os.getpid()} {sorted(['Rest here.', 'Soften.', 'Breathe in.', 'Let go.'])}"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.wav")) == ["one.wav", "two.wav"]


@pytest.mark.slow
def test_plan_shows_each_script_of_a_folder_after_making_all_their_speech(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUIDED_AUDIO_CACHE", str(tmp_path / "cache"))
    log = tmp_path / "synthesis.log"
    _spy_synthesis(monkeypatch, log)
    library = tmp_path / "library"
    library.mkdir()
    one = write(library, SPOKEN.format(title="One", line="Rest here."), "one.yaml")
    two = write(library, SPOKEN.format(title="Two", line="Let go."), "two.yaml")
    bad = write(library, "title: Bad\nsections:\n  - title: A\n    steps: [{pause: 7 parsecs}]\n",
                "bad.yaml")  # fmt: skip
    result = cli("plan", str(library))
    assert result.exit_code == 2, result.output
    assert len(log.read_text().splitlines()) == 1  # both scripts' speech in one call
    singles = [cli("plan", str(path)) for path in (one, two)]
    assert result.stdout == f"{one}\n{singles[0].stdout}\n{two}\n{singles[1].stdout}"
    assert result.stderr.startswith(f"{bad}:4:21: expected a duration")
    assert len(log.read_text().splitlines()) == 1  # cached: nothing made again


def _pid_of_export(job: object) -> int:
    return os.getpid()


def test_several_scripts_need_a_folder(tmp_path: Path) -> None:
    a = write(tmp_path, SESSION.format(title="A"), "a.yaml")
    b = write(tmp_path, SESSION.format(title="B"), "b.yaml")
    result = cli("export", str(a), str(b), "-o", str(tmp_path / "x.mp3"))
    assert result.exit_code == 2
    assert (
        result.stderr.strip() == f"-o {tmp_path / 'x.mp3'}: with several scripts, -o names a folder"
    )


@pytest.mark.parametrize(
    ("parts", "name"),
    [
        pytest.param(("box-breathing", "Sam"), "box-breathing-sam", id="client"),
        pytest.param(("grounding", "Ana María / Ö"), "grounding-ana-mar-a", id="path-chars"),
        pytest.param(("con",), "con-", id="reserved"),
        pytest.param(("..",), "session", id="nothing-left"),
        pytest.param(("x" * 300,), "x" * MAX_NAME, id="long"),
    ],
)
def test_file_names_are_safe_on_every_os(parts: tuple[str, ...], name: str) -> None:
    assert safe_name(*parts) == name


def test_sigterm_stops_a_batch_and_leaves_nothing(tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    long = "title: L\nsections:\n  - title: A\n    steps:\n      - say: Hi.\n      - pause: 50m\n"
    for name in ("one.yaml", "two.yaml"):
        write(library, long, name)
    out = tmp_path / "out"
    process = subprocess.Popen(
        [sys.executable, "-m", "guided_audio", "export", str(library), "-o", str(out),
         "-j", "2", "--loudness", "off", "--format", "wav"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr = interrupt_when_ready(
        process, lambda: len(list(out.glob(".*.partial"))) == 2, "the batch", signal.SIGTERM
    )
    assert process.returncode == 143, stderr
    assert "Traceback" not in stderr
    assert list(out.iterdir()) == []
