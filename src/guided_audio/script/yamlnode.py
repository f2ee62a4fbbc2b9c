"""Safe YAML loading into nodes that know their file, line and column.

Only the composer runs: nothing is constructed, so no tag can execute code. Tags, anchors
and aliases are refused outright, as are tabs in indentation, deep nesting and huge or
binary files. Plain scalars are typed by YAML 1.2's core schema, as editors read them:
only true/false are booleans (`yes`, `no`, `on`, `off` are text), numbers are decimal,
0o octal or 0x hex, and `1:30` is text. Validators call `Node.fail(...)` and never format
a location themselves.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import yaml

from guided_audio.errors import Invalid, Location, Problem

MAX_BYTES = 1_000_000
MAX_DEPTH = 12

STR = "tag:yaml.org,2002:str"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"
BOOL = "tag:yaml.org,2002:bool"
NULL = "tag:yaml.org,2002:null"


DESCRIBE_MAX = 40  # a value quoted back in a message is cut to this many characters


@dataclass(frozen=True)
class Node:
    """A YAML node plus the file it came from."""

    raw: yaml.Node
    path: str

    @property
    def location(self) -> Location:
        mark = self.raw.start_mark
        return Location(self.path, mark.line + 1, mark.column + 1)

    def fail(self, message: str, hint: str | None = None, column_offset: int = 0) -> NoReturn:
        loc = self.location
        if column_offset:
            loc = Location(loc.path, loc.line, loc.column + column_offset)
        raise Invalid(Problem(loc, self.path, message, hint))

    # --- shapes -------------------------------------------------------------------------
    @property
    def is_mapping(self) -> bool:
        return isinstance(self.raw, yaml.MappingNode)

    @property
    def is_sequence(self) -> bool:
        return isinstance(self.raw, yaml.SequenceNode)

    @property
    def is_scalar(self) -> bool:
        return isinstance(self.raw, yaml.ScalarNode)

    @property
    def tag(self) -> str:
        return str(self.raw.tag)

    def describe(self) -> str:
        """How the node reads to an author: 'a list', 'the number 3', "'ten seconds'"."""
        if self.is_mapping:
            return "a mapping of keys"
        if self.is_sequence:
            return "a list"
        value = str(self.raw.value)
        if len(value) > DESCRIBE_MAX:
            value = value[: DESCRIBE_MAX - 1] + "…"
        if self.tag == NULL:
            return "nothing"
        if self.tag == BOOL:
            return f"the yes/no value {value!r}"
        if self.tag in (INT, FLOAT):
            return f"the number {value}"
        return repr(value)

    def items(self, unique: bool = True) -> Iterator[tuple[str, Node, Node]]:
        """Key name, key node and value node of a mapping; duplicate keys fail if `unique`."""
        if not self.is_mapping:
            self.fail(f"expected a mapping of keys, found {self.describe()}")
        seen: set[str] = set()
        for key_raw, value_raw in self.raw.value:
            key = Node(key_raw, self.path)
            if not key.is_scalar:
                key.fail("expected a plain key name")
            name = str(key_raw.value)
            if name in seen and unique:
                key.fail(f"duplicate key '{name}'", "each key may appear once in a mapping")
            seen.add(name)
            yield name, key, Node(value_raw, self.path)

    def elements(self) -> list[Node]:
        if not self.is_sequence:
            self.fail(f"expected a list, found {self.describe()}")
        return [Node(raw, self.path) for raw in self.raw.value]

    def text(self, what: str = "text") -> str:
        """A non-empty string scalar that every engine and container can carry."""
        if not self.is_scalar or self.tag != STR:
            hint = "put it in quotes" if self.tag in (BOOL, INT, FLOAT, NULL) else None
            self.fail(f"expected {what}, found {self.describe()}", hint)
        value = str(self.raw.value)
        if not value.strip():
            self.fail(f"{what} is empty")
        bad = _UNCARRIABLE.search(value)
        if bad is not None:
            code = ord(bad.group())
            kind = "a lone surrogate" if 0xD800 <= code <= 0xDFFF else "a control character"
            self.fail(
                f"{what} contains {kind} (U+{code:04X})",
                "speech engines, tags and file names cannot carry it; remove the escape",
                self.scalar_column(bad.start()),
            )
        return value

    def number(self, what: str) -> float:
        value = self.numeric()
        if value is None or not math.isfinite(value):
            self.fail(f"expected {what}, found {self.describe()}")
        return value

    def numeric(self) -> float | None:
        """The value of a number as YAML 1.2 reads it (7, -1.5, 1e3, 0o17, 0x1F, .inf),
        or None for anything else."""
        if not self.is_scalar or self.tag not in (INT, FLOAT):
            return None
        text = str(self.raw.value)
        if text.lower().endswith((".inf", ".nan")):
            return float(text.replace(".", "", 1))
        if self.tag == INT:
            base = {"0o": 8, "0x": 16}.get(text[:2], 10)
            whole = int(text[2:] if base != 10 else text, base)
            return float(whole) if abs(whole) < 10**300 else (math.inf if whole > 0 else -math.inf)
        return float(text)

    def scalar_column(self, offset: int) -> int:
        """Column offset of character `offset` of a one-line scalar's value, else 0."""
        start, end = self.raw.start_mark, self.raw.end_mark
        style = getattr(self.raw, "style", None)
        if start.line != end.line or style in ("|", ">"):
            return 0
        return offset + (1 if style in ("'", '"') else 0)


# In text values (after YAML's escapes are read): NUL and other C0/C1 controls but tab and
# newline, DEL, lone surrogates and the two non-characters.
_UNCARRIABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    """A hint naming the closest choice, or listing them all."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    return "expected one of: " + ", ".join(choices)


class CoreSchema(yaml.resolver.BaseResolver):
    """YAML 1.2's core schema (yaml.org/spec/1.2.2 section 10.3), in place of PyYAML's 1.1."""


_CORE = (
    (BOOL, r"true|True|TRUE|false|False|FALSE", "tTfF"),
    (NULL, r"~|null|Null|NULL|", "~nN"),
    (INT, r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    (
        FLOAT,
        r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?"
        r"|[-+]?\.(inf|Inf|INF)|\.nan|\.NaN|\.NAN",
        "-+.0123456789",
    ),
)
for _tag, _pattern, _first in _CORE:
    # The first characters a match may start with; "" is the empty scalar (null).
    _starts = [*_first, ""] if _tag == NULL else list(_first)
    CoreSchema.add_implicit_resolver(_tag, re.compile(f"^(?:{_pattern})$"), _starts)


class _Composer(
    yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser, yaml.composer.Composer,
    CoreSchema,
):  # fmt: skip
    """A composer only (no constructor), typing scalars by the core schema; refuses tags,
    anchors, aliases and deep nesting."""

    def __init__(self, text: str, path: str) -> None:
        yaml.reader.Reader.__init__(self, text)
        yaml.scanner.Scanner.__init__(self)
        yaml.parser.Parser.__init__(self)
        yaml.composer.Composer.__init__(self)
        CoreSchema.__init__(self)
        self._path = path
        self._depth = 0

    def _refuse(self, mark: yaml.Mark, message: str, hint: str) -> NoReturn:
        loc = Location(self._path, mark.line + 1, mark.column + 1)
        raise Invalid(Problem(loc, self._path, message, hint))

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        mark: yaml.Mark = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            self._refuse(mark, "YAML aliases (*name) are not allowed", "write the value out")
        if getattr(event, "anchor", None):
            self._refuse(mark, "YAML anchors (&name) are not allowed", "write the value out")
        tag = getattr(event, "tag", None)
        if tag not in (None, "!"):
            self._refuse(
                mark,
                f"YAML tags like '{tag}' are not allowed",
                "scripts are plain data; remove the tag",
            )
        self._depth += 1
        if self._depth > MAX_DEPTH:
            self._refuse(
                mark,
                f"the script is nested more than {MAX_DEPTH} levels deep",
                "scripts need only a few levels: sections, steps, options",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _problem(path: str, line: int, column: int, message: str, hint: str | None = None) -> Problem:
    return Problem(Location(path, line, column), path, message, hint)


def read_text(path: Path) -> str:
    """The file's text, or Invalid for a missing, oversized, binary or non-UTF-8 file."""
    name = str(path)
    if not path.exists():
        raise Invalid(Problem(None, name, "no such file"))
    if path.is_dir():
        raise Invalid(Problem(None, name, "is a directory, not a script file"))
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise Invalid(
                _problem(
                    name,
                    1,
                    1,
                    f"the file is {size:,} bytes; scripts are limited to {MAX_BYTES:,}",
                    "split the session into several scripts",
                )
            )
        data = path.read_bytes()
    except OSError as exc:
        raise Invalid(Problem(None, name, f"cannot read the file: {exc.strerror}")) from None
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        raise Invalid(_problem(name, line, 1, "this is a binary file, not a YAML script"))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        # Columns count characters, as an editor does, not bytes.
        column = len(before[before.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")) + 1
        raise Invalid(
            _problem(
                name,
                line,
                column,
                f"the file is not UTF-8 text (byte 0x{data[exc.start]:02x})",
                "save it as UTF-8",
            )
        ) from None


# YAML also breaks lines at NEL, LS and PS; editors count only \n (and \r\n). Read as spaces,
# they keep every line and column where the author's editor shows them.
_EXTRA_BREAKS = str.maketrans({"\x85": " ", "\u2028": " ", "\u2029": " "})
# What YAML cannot carry at all (its reader refuses them), found before it is asked.
_UNPRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


def _unprintable_problem(text: str, path: str) -> Problem | None:
    match = _UNPRINTABLE.search(text)
    if match is None:
        return None
    before = text[: match.start()]
    line = before.count("\n") + 1
    column = match.start() - (before.rfind("\n") + 1) + 1
    return _problem(
        path,
        line,
        column,
        f"control character U+{ord(match.group()):04X} in the file",
        "remove it; scripts are plain text",
    )


def _tab_problems(text: str, path: str) -> list[Problem]:
    problems = []
    for number, line in enumerate(text.split("\n"), start=1):
        indent = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in indent:
            problems.append(
                _problem(
                    path,
                    number,
                    indent.index("\t") + 1,
                    "tab character in indentation",
                    "YAML indents with spaces only",
                )
            )
    return problems


def load(path: Path) -> Node | list[Problem]:
    """The document's root node, or the problems that stopped it from being read."""
    name = str(path)
    try:
        text = read_text(path)
    except Invalid as exc:
        return [exc.problem]
    text = text.translate(_EXTRA_BREAKS)
    unprintable = _unprintable_problem(text, name)
    if unprintable is not None:
        return [unprintable]
    tabs = _tab_problems(text, name)
    if tabs:
        return tabs
    composer = _Composer(text, name)
    try:
        root = composer.get_single_node()
    except Invalid as exc:
        return [exc.problem]
    except RecursionError:
        return [_problem(name, 1, 1, "the script is nested too deeply", "scripts need few levels")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        hint = "check the indentation, and quote text that contains ': ' or starts with a symbol"
        return [_problem(name, line, column, message, hint)]
    finally:
        composer.dispose()
    if root is None:
        return [_problem(name, 1, 1, "the file is empty", "a script needs 'title' and 'sections'")]
    return Node(root, name)
