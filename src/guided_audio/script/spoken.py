"""Spoken text in a script: `{variables}` filled in, `[pause 3s]` inline pauses cut out,
and the `--var` values that override a script's variables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from fractions import Fraction

from guided_audio.errors import Invalid, UsageError
from guided_audio.script.grammar import (
    MAX_PAUSE_S,
)
from guided_audio.script.model import (
    Pause,
    Say,
)
from guided_audio.script.values import DurationForm, duration_clock, duration_from_text
from guided_audio.script.yamlnode import BOOL, NULL, Node, suggest

# --- spoken text -----------------------------------------------------------------------------
_INLINE_PAUSE = re.compile(r"^(?:pause\s+)?(\S+)$", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def spoken_text(node: Node, variables: Mapping[str, str], what: str = "text") -> Say:
    raw = node.text(what)
    parts: list[str | Pause] = []
    buffer: list[str] = []
    i = 0

    def at(offset: int, message: str, hint: str | None = None) -> Invalid:
        try:
            node.fail(message, hint, node.scalar_column(offset))
        except Invalid as exc:
            return exc

    while i < len(raw):
        ch = raw[i]
        if raw.startswith("{{", i) or raw.startswith("}}", i):
            buffer.append(ch)
            i += 2
        elif ch == "{":
            end = raw.find("}", i)
            name = raw[i + 1 : end].strip() if end != -1 else ""
            if end == -1:
                raise at(i, "unclosed '{' in text", "write {{ for a literal brace")
            if not _NAME.match(name):
                raise at(i, f"'{raw[i : end + 1]}' is not a variable", "template code is not run")
            if name not in variables:
                known = sorted(variables)
                hint = suggest(name, known) if known else "define it under 'variables:'"
                raise at(i, f"undefined variable '{{{name}}}'", hint)
            buffer.append(variables[name])
            i = end + 1
        elif ch == "}":
            raise at(i, "single '}' in text", "write }} for a literal brace")
        elif ch == "[":
            end = raw.find("]", i)
            if end == -1:
                raise at(i, "unclosed '[' in text", "inline pauses look like [pause 3s]")
            tag = raw[i + 1 : end].strip()
            match = _INLINE_PAUSE.match(tag)
            try:
                seconds = duration_from_text(match.group(1)) if match else None
            except DurationForm:
                seconds = None
            if seconds is None or seconds <= 0:
                raise at(
                    i, f"unknown inline tag '[{tag}]'", "inline pauses look like [pause 3s] or [3s]"
                )
            if seconds > MAX_PAUSE_S:
                clock = duration_clock(float(min(seconds, Fraction(10**300))))
                raise at(i, f"inline pause is {clock}; the most allowed is 1h")
            parts.append("".join(buffer))
            parts.append(Pause(float(seconds)))
            buffer = []
            i = end + 1
        elif ch == "<" and re.match(r"</?[A-Za-z!?%]", raw[i:]):
            raise at(i, "markup tags are not supported in text", "use [pause 3s] for a pause")
        else:
            buffer.append(ch)
            i += 1
    parts.append("".join(buffer))
    cleaned: list[str | Pause] = []
    for part in parts:
        if isinstance(part, Pause):
            cleaned.append(part)
        elif re.search(r"\w", part):
            cleaned.append(" ".join(part.split()))
    if not any(isinstance(p, str) for p in cleaned):
        node.fail(f"{what} has nothing to say", "use a 'pause' step for silence")
    return Say(tuple(cleaned))


def plain_text(node: Node, variables: Mapping[str, str], what: str) -> str:
    """A title-like text with variables expanded and no pauses."""
    said = spoken_text(node, variables, what)
    if any(isinstance(p, Pause) for p in said.parts):
        node.fail(f"{what} cannot contain pauses")
    return said.text


def read_variables(node: Node, overrides: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, key, value in node.items():
        if not _NAME.match(name):
            key.fail(f"'{name}' is not a valid variable name", "use letters, digits and _")
        if not value.is_scalar or value.tag in (NULL, BOOL):
            value.fail(f"expected text for variable '{name}', found {value.describe()}")
        values[name] = str(value.raw.value)
    unknown = sorted(set(overrides) - set(values))
    if unknown:
        names = ", ".join(sorted(values)) or "none"
        raise UsageError(
            f"--var {unknown[0]}: the script has no variable '{unknown[0]}' (it defines: {names})"
        )
    values.update(overrides)
    return values


def parse_vars(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--var name=value` options as a mapping."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not _NAME.match(name.strip()):
            raise UsageError(f"--var {pair!r}: expected name=value, like --var client=Sam")
        values[name.strip()] = value
    return values
