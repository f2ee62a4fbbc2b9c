"""Fuzzing the loader: mutated valid scripts must give the project's errors only, fast, small,
each located (FILE:LINE:COL) or naming a file-level problem; what it accepts must plan.

Bounded for CI (about a minute); a long run:
    GUIDED_AUDIO_FUZZ_EXAMPLES=20000 .venv/bin/python -m pytest tests/test_fuzz.py
"""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from guided_audio.dsp.decode import file_length
from guided_audio.errors import GuidedAudioError
from guided_audio.plan.builder import build, estimate_speech
from guided_audio.script.loader import load_script
from guided_audio.script.values import duration_from_text
from guided_audio.speech.registry import CATALOG

ROOT = Path(__file__).parent.parent
BASES = [p.read_bytes() for p in sorted((ROOT / "scripts").glob("*.yaml"))]
EXAMPLES = int(os.environ.get("GUIDED_AUDIO_FUZZ_EXAMPLES", "4000"))
ODD_VALUES = [
    b"[]", b"{}", b"~", b"yes", b"1e400", b"-5", b"0", b'"\\0"', b'"\\ud800"', b"9" * 400,
    b"a" * 5000, b"!!python/object:os.system", b"&a x", b"*a", b"[" * 60 + b"]" * 60,
    b"\x1b", b"\x7f", b"\xc2\x85", b"\xe2\x80\xa8", b"\xff\xfe", b'"{{"', b"{x}", b"[pause]",
    b"1ms", b"10000h", b"-1dB", b"NaN", b".inf", b"\t",
]  # fmt: skip
LOCATED = re.compile(r"^(?P<path>.+?)(:\d+:\d+)?: \S")
MAX_SECONDS = 2.0  # 1 s, doubled for tracemalloc's own cost
MAX_MEMORY_MB = 200  # allocated while loading and planning one script (tracemalloc)


def _load_and_plan(path: Path) -> str:
    """'' when the script loads and plans; else the project error's message (any other
    exception fails the test by propagating)."""
    try:
        script = load_script(path, catalog=CATALOG)
        build(script, estimate_speech, file_length)
    except GuidedAudioError as exc:
        return str(exc)
    return ""


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 4))):
        lines = data.split(b"\n")
        kind = draw(st.sampled_from(["byte", "delete", "duplicate", "value", "unicode", "nest"]))
        index = draw(st.integers(0, max(0, len(lines) - 1)))
        if kind == "byte" and data:
            at = draw(st.integers(0, len(data) - 1))
            data[at : at + 1] = bytes([draw(st.integers(0, 255))])
            continue
        if kind == "delete":
            del lines[index]
        elif kind == "duplicate":
            lines.insert(index, lines[index])
        elif kind == "value" and b": " in lines[index]:
            head = lines[index].split(b": ", 1)[0]
            lines[index] = head + b": " + draw(st.sampled_from(ODD_VALUES))
        elif kind == "unicode":
            lines[index] += draw(st.text(max_size=20)).encode("utf-8", "surrogatepass")
        elif kind == "nest":
            depth = draw(st.integers(1, 200))
            lines[index] += b" " + b"[" * depth + b"1" + b"]" * depth
        data = bytearray(b"\n".join(lines))
    return bytes(data)


@settings(
    max_examples=EXAMPLES,
    deadline=None,  # timed below, against MAX_SECONDS, with a clear message
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(content=mutated())
@pytest.mark.slow
def test_mutated_scripts_give_located_project_errors_or_plan(
    tmp_path: Path, content: bytes
) -> None:
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(content)
    started = time.monotonic()
    tracemalloc.start()
    try:
        message = _load_and_plan(path)
        peak_mb = tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()
    elapsed = time.monotonic() - started
    for line in message.splitlines():
        match = LOCATED.match(line)
        assert match is not None and match["path"] == str(path), line
    assert elapsed < MAX_SECONDS, f"{elapsed:.2f} s for {content[:200]!r}"
    assert peak_mb < MAX_MEMORY_MB, f"{peak_mb:.0f} MB for {content[:200]!r}"


@settings(max_examples=300, deadline=None)
@given(
    hours=st.integers(0, 3),
    minutes=st.integers(0, 59),
    seconds=st.integers(0, 59),
    millis=st.integers(0, 999),
)
def test_durations_round_trip(hours: int, minutes: int, seconds: int, millis: int) -> None:
    text = "".join(
        f"{value}{unit}"
        for value, unit in ((hours, "h"), (minutes, "m"), (seconds, "s"), (millis, "ms"))
        if value
    )
    total = hours * 3600 + minutes * 60 + seconds + millis / 1000
    if not text:
        assert duration_from_text("0") == 0.0
        return
    assert duration_from_text(text) == pytest.approx(total, abs=1e-9)
    assert duration_from_text(f"{total:.3f}") == pytest.approx(total, abs=1e-9)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_duration_parser_never_raises_and_is_never_negative(text: str) -> None:
    value = duration_from_text(text)
    assert value is None or value >= 0
