"""A practice's clients, read from a CSV file: one row per client, a `folder` column (the
client's folder of files; their name only if the therapist writes it there), an optional
`length`, and the script variables the sessions use. Every problem in the file is found
and located (clients.csv:LINE:COL) before anything is made.
"""

from __future__ import annotations

import csv
import difflib
import io
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from pathlib import Path

from guided_audio.clinic.manifest import MANIFEST
from guided_audio.errors import Location, Problem, ScriptError, UsageError
from guided_audio.plan.length import parse_length

FOLDER = "folder"
LENGTH = "length"
COLUMNS = (FOLDER, LENGTH)  # the columns that are not script variables
MAX_FOLDER = 100
_UNSAFE = re.compile(r"[\x00-\x1f<>:\"|?*]")  # names no system takes; separators apart


@dataclass(frozen=True)
class Client:
    """One row: the folder their files go to, their variables, their length (None: each
    session's natural length) and the line of the file they were read from."""

    folder: str
    variables: dict[str, str]
    length_s: float | None
    line: int


class _Cells:
    """A row's cells with the column each starts at, for locating a problem."""

    def __init__(self, path: Path, line: int, text: str, cells: list[str], delimiter: str) -> None:
        self.path, self.line, self.cells = path, line, cells
        self.columns = _starts(text, len(cells), delimiter)

    def at(self, index: int) -> Location:
        return Location(str(self.path), self.line, self.columns[index])


def read_clients(path: Path, variables: Collection[str], strict: bool = True) -> list[Client]:
    """The clients listed in `path`, whose columns may be `folder`, `length` and any of
    `variables` (those the sessions use; with `strict` False, any other column too, left
    unused); a ScriptError (exit 2) locating every problem."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's byte-order mark
    except FileNotFoundError:
        raise UsageError(f"--clients {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--clients {path}: cannot be read ({exc})") from None
    try:
        rows = list(_rows(path, text))
    except _Unreadable as exc:
        raise ScriptError([exc.problem]) from None
    if not rows:
        raise ScriptError([Problem(Location(str(path), 1, 1), str(path), "no header row")])
    header, *clients = rows
    problems = _check_header(header, variables, strict)
    if not clients:
        problems.append(Problem(header.at(0), str(path), "no clients: one row per client"))
    names = [name.strip() for name in header.cells]
    read: list[Client] = []
    seen: dict[str, int] = {}
    for row in clients:
        if len(row.cells) != len(names):
            message = f"{len(row.cells)} cells where the header has {len(names)}"
            problems.append(Problem(row.at(0), str(path), message))
            continue
        cells = dict(zip(names, row.cells, strict=True))
        found = _client(row, names, cells, problems)
        if found is None:
            continue
        key = found.folder.casefold()  # one folder on a case-insensitive disk
        if key in seen:
            message = f"folder {found.folder!r} is also on line {seen[key]}: one client each"
            problems.append(Problem(row.at(names.index(FOLDER)), str(path), message))
            continue
        seen[key] = row.line
        read.append(found)
    if problems:
        raise ScriptError(problems)
    return read


class _Unreadable(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _rows(path: Path, text: str) -> Iterator[_Cells]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # as csv counts them
    delimiter = _delimiter(lines[0])

    class Dialect(csv.excel):
        strict = True  # an unclosed quote is an error, not the rest of the file in one cell

    Dialect.delimiter = delimiter
    reader = csv.reader(io.StringIO(text, newline=""), Dialect)
    first_line = 1
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            where = Location(str(path), first_line, 1)
            raise _Unreadable(Problem(where, str(path), f"not a CSV row: {exc}")) from None
        line = first_line
        first_line = reader.line_num + 1
        if any(cell.strip() for cell in cells):  # blank lines are skipped
            yield _Cells(path, line, lines[line - 1], cells, delimiter)


def _delimiter(header: str) -> str:
    """Commas, or the semicolons (or tabs) a spreadsheet in another locale writes."""
    counts = {",": header.count(","), ";": header.count(";"), "\t": header.count("\t")}
    return max(counts, key=lambda d: counts[d]) if any(counts.values()) else ","


def _starts(text: str, count: int, delimiter: str) -> list[int]:
    """The 1-based column where each of a row's `count` cells starts (quotes respected; a
    cell over several lines puts the ones after it at its line's end)."""
    starts, quoted = [1], False
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif char == delimiter and not quoted:
            starts.append(index + 2)
    return (starts + [starts[-1]] * count)[:count]


def _check_header(header: _Cells, variables: Collection[str], strict: bool) -> list[Problem]:
    problems: list[Problem] = []
    names = [name.strip() for name in header.cells]
    known = sorted(variables)
    for index, name in enumerate(names):
        where, path = header.at(index), str(header.path)
        if names.index(name) != index:
            problems.append(Problem(where, path, f"column {name!r} appears twice"))
        elif name in COLUMNS or name in variables or not strict:
            continue
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and not difflib.get_close_matches(
            name, [*COLUMNS, *known], n=1
        ):
            used = ", ".join(known) if known else "none"
            message = f"variable {name!r} is not used by any of these scripts (they use: {used})"
            problems.append(Problem(where, path, message))
        else:
            close = difflib.get_close_matches(name, [*COLUMNS, *known], n=1)
            hint = f"did you mean {close[0]!r}?" if close else None
            columns = ", ".join([*COLUMNS, *known])
            message = f"unknown column {name!r} (columns: {columns})"
            problems.append(Problem(where, path, message, hint))
    if FOLDER not in names:
        message = f"no {FOLDER!r} column: it names each client's folder of files"
        problems.append(Problem(header.at(0), str(header.path), message))
    return problems


def _client(
    row: _Cells, names: list[str], cells: dict[str, str], problems: list[Problem]
) -> Client | None:
    if FOLDER not in cells:
        return None
    before = len(problems)
    folder = cells[FOLDER].strip()
    where = row.at(names.index(FOLDER))
    why = _bad_folder(folder)
    if why:
        problems.append(Problem(where, str(row.path), why))
    length_s = None
    if cells.get(LENGTH, "").strip():
        try:
            length_s = parse_length(cells[LENGTH].strip())
        except UsageError as exc:
            message = str(exc).removeprefix("--length ")
            problems.append(Problem(row.at(names.index(LENGTH)), str(row.path), message))
    variables = {k: v.strip() for k, v in cells.items() if k not in COLUMNS and v.strip()}
    if len(problems) > before:
        return None
    return Client(folder, variables, length_s, row.line)


def _bad_folder(folder: str) -> str | None:
    if not folder:
        return "the folder is empty: every client needs one"
    if "/" in folder or "\\" in folder:
        return f"folder {folder!r} has a path separator: a folder is one name"
    if folder in (".", "..") or folder.startswith("."):
        return f"folder {folder!r} starts with '.': a folder is a plain name"
    if folder.casefold() == MANIFEST:
        return f"folder {folder!r} is the batch's own record: choose another name"
    if _UNSAFE.search(folder) or folder != folder.strip() or len(folder) > MAX_FOLDER:
        return f"folder {folder!r}: letters, digits, spaces, '-' and '_' only (up to {MAX_FOLDER})"
    return None
