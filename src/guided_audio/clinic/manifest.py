"""A batch folder's manifest (`batch.json`, owner-only): each finished file with its hash,
size and time, and the recipe it was made from (the script's bytes, the variables it
uses, the length and settings, this version). `--resume` makes only what it lacks, or what
changed. Updates are locked (`.batch.lock`), so two batches into one folder keep both.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from guided_audio.files import file_sha256, temp_beside

MANIFEST = "batch.json"
LOCK = ".batch.lock"
FORMAT = 1


class Manifest:
    """The record of what a batch folder holds, read and written under its lock."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / MANIFEST

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(self.folder / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # and the lock with it

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        return files if data.get("format") == FORMAT and isinstance(files, dict) else {}

    def up_to_date(self, names: list[str], recipe: str) -> bool:
        """Whether every file of `names` (paths within the folder) is there as recorded,
        made from `recipe`."""
        files = self._read()
        for name in names:
            entry = files.get(name)
            try:
                info = (self.folder / name).stat()
            except OSError:
                return False
            if not isinstance(entry, dict) or entry.get("recipe") != recipe:
                return False
            if entry.get("size") != info.st_size or entry.get("mtime_ns") != info.st_mtime_ns:
                return False  # changed or replaced since: made again
        return True

    def record(self, names: list[str], recipe: str, hashes: dict[str, str]) -> None:
        """Note the files `names`, just made from `recipe`, with their hashes as they were
        made (`hashes`; hashed here where one is missing)."""
        made = {}
        for name in names:
            path = self.folder / name
            info = path.stat()
            sha = hashes.get(name) or file_sha256(path)
            made[name] = {"recipe": recipe, "sha256": sha,
                          "size": info.st_size, "mtime_ns": info.st_mtime_ns}  # fmt: skip
        with self._locked():
            files = self._read()  # as the other batches left it
            files.update(made)
            with temp_beside(self.path, ".tmp") as temp:
                temp.write_text(json.dumps({"format": FORMAT, "files": files}, indent=1))
                os.replace(temp, self.path)

    def hashes(self) -> dict[str, str]:
        """Each recorded file's SHA-256."""
        return {name: str(entry.get("sha256")) for name, entry in self._read().items()}
