"""The client's private files: where each session was left, and the journal.

Everything here is the owner's only (folders 0700, files 0600), written to a temp file
and renamed, and never sent anywhere.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from guided_audio.errors import GuidedAudioError
from guided_audio.files import temp_beside


def home() -> Path:
    """$GUIDED_AUDIO_HOME, else sessions/ (beside the exports)."""
    return Path(os.environ.get("GUIDED_AUDIO_HOME") or "sessions")


def private_folder(path: Path) -> Path:
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except OSError as exc:
        raise GuidedAudioError(
            f"cannot use the private folder {path}: {exc.strerror or exc}; "
            "set GUIDED_AUDIO_HOME to a folder you can write"
        ) from None
    return path


def write_private(path: Path, text: str) -> None:
    """Replace `path` with `text` atomically; the file is 0600 (the temp file already is)."""
    private_folder(path.parent)
    try:
        with temp_beside(path, ".tmp") as temp:
            temp.write_text(text, encoding="utf-8")
            os.replace(temp, path)
    except OSError as exc:
        raise GuidedAudioError(f"cannot write {path}: {exc.strerror or exc}") from None


# --- where each session was left -------------------------------------------------------------
class Positions:
    """Play positions keyed by the script's resolved path (not its text: edits keep it),
    and the --length it plays at: each length keeps its own place."""

    def __init__(self, path: Path | None = None, length_s: float | None = None) -> None:
        self.path = path or home() / "state" / "positions.json"
        self.length_s = length_s
        self.note: str | None = None  # set when the file was damaged and ignored

    def _load(self) -> dict[str, dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self.note = f"note: ignoring the damaged resume file {self.path} ({exc})"
            return {}
        if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
            self.note = f"note: ignoring the damaged resume file {self.path}"
            return {}
        return data

    def key(self, script: Path) -> str:
        where = str(script.resolve())
        return where if self.length_s is None else f"{where} at {self.length_s:g}s"

    def get(self, script: Path) -> int | None:
        sample = self._load().get(self.key(script), {}).get("sample")
        return sample if isinstance(sample, int) and sample >= 0 else None

    def set(self, script: Path, sample: int) -> None:
        data = self._load()
        data[self.key(script)] = {
            "sample": sample,
            "saved": datetime.now().isoformat("T", "seconds"),
        }
        write_private(self.path, json.dumps(data, indent=1, sort_keys=True))

    def clear(self, script: Path) -> None:
        data = self._load()
        if data.pop(self.key(script), None) is not None:
            write_private(self.path, json.dumps(data, indent=1, sort_keys=True))


# --- the journal -----------------------------------------------------------------------------
HEADING = re.compile(r"^## (\d{4}-\d\d-\d\d \d\d:\d\d) · (.*)$")
QUESTION = re.compile(r"^\*\*.+\*\*$")


@dataclass(frozen=True)
class Entry:
    when: str
    title: str
    body: str
    path: Path

    @property
    def answers(self) -> int:
        return sum(1 for line in self.body.splitlines() if QUESTION.match(line))


def journal_folder() -> Path:
    return home() / "journal"


def journal_file(script: Path) -> Path:
    return journal_folder() / f"{script.stem}.md"


class JournalEntry:
    """One sitting's answers, appended to the script's journal as each one is given, so an
    interruption loses nothing already written."""

    def __init__(self, path: Path, title: str, when: datetime | None = None) -> None:
        self.path = path
        self.heading = f"## {(when or datetime.now()):%Y-%m-%d %H:%M} · {title}\n"
        try:
            self._before = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            self._before = ""
        except OSError as exc:
            raise GuidedAudioError(f"cannot read the journal {path}: {exc.strerror}") from None
        if self._before and not self._before.endswith("\n\n"):
            self._before += "\n" if self._before.endswith("\n") else "\n\n"
        self._answers: list[str] = []

    def add(self, question: str, answer: str) -> None:
        if not answer.strip():
            return  # an empty answer is skipped
        self._answers.append(f"\n**{question.strip()}**\n\n{answer.strip()}\n")
        write_private(self.path, self._before + self.heading + "".join(self._answers))

    @property
    def written(self) -> int:
        return len(self._answers)


def entries(folder: Path | None = None) -> list[Entry]:
    """Every journal entry, oldest first."""
    found: list[Entry] = []
    for path in sorted((folder or journal_folder()).glob("*.md")):
        heading: re.Match[str] | None = None
        body: list[str] = []
        for line in path.read_text(encoding="utf-8").splitlines():
            match = HEADING.match(line)
            if match is None:
                body.append(line)
                continue
            if heading is not None:
                found.append(Entry(heading[1], heading[2], "\n".join(body).strip(), path))
            heading, body = match, []
        if heading is not None:
            found.append(Entry(heading[1], heading[2], "\n".join(body).strip(), path))
    return sorted(found, key=lambda e: e.when)
