"""What an editor says about scripts: the real yaml-language-server (tests/lsp.py) with the
schema the package ships, found as editors find it (the `yaml.schemas` setting, a modeline)."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import BEYOND_A_SCHEMA, cli
from guided_audio.script import grammar
from guided_audio.script.authoring import schema_path
from lsp import LanguageServerError, YamlLanguageServer, needs_server

ROOT = Path(__file__).parent.parent
BUNDLED = sorted((ROOT / "scripts").glob("*.yaml"))
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
# Where the editor's own YAML parser decides, apart from the schema.
EDITOR_PARSER = {"duplicate-key": True}  # yaml-language-server refuses equal keys too
# Fixtures both reject, but where the editor underlines another place, and why.
ELSEWHERE = {
    "cycles-and-for": "the editor marks the breathe mapping; validate, the second key",
    "deep-nesting": "the editor marks the first value of the wrong kind; validate, the depth",
    "syntax-error": "the two YAML parsers stop at different places",
}
# Values both read alike: each is a step's or a key's text in a small script.
BOTH_ACCEPT = [
    "say: yes", "say: 'off'", "pause: 1h", "pause: 59m59.5s", "pause: 1e1", "pause: 0x10",
    "pause: 7 S", "pause: 1m 30s", "pause: 500ms", "pause: '90'",
    "breathe: {pattern: {in: 4, hold: 0, out: 0.5s}, cycles: 2}",
    "breathe: {pattern: box, for: 1m}", "bell: {name: gong, strikes: 12}",
    "reflect: {question: 'Still here?', silence: 0.5m}",
]  # fmt: skip
BOTH_REJECT = [
    "pause: 2h", 'pause: ""', "pause: 7 seconds", "pause: 1m90s", "pause: 1.5m30s",
    "pause: 0", "pause: -5s", "pause: 1:30", "pause: yes",
    "breathe: {pattern: {in: 0s, out: 4}, cycles: 2}",
    "breathe: {pattern: {in: 4, hold: 0.2s, out: 4}, cycles: 2}",
    "breath: {pattern: box, cycles: 2}", "bell: {name: bowl, strikes: 13}",
    "say: true", "say: ''", "say: 5",
]  # fmt: skip
SCRIPT_LEVEL = """\
title: Keys
{head}
sections:
  - title: A
    steps:
      - say: Hello.
"""
HEAD_ACCEPT = [
    "variables: {consent: yes}", "music: off", "music: no", "music: none", "music: false",
    "music: {bed: drone, level: -60 dB, duck: 0dB}", "music: {bed: noise, level: '-0.5'}",
    "voice: {gap: 0, clause_pause: 10s, pace: 0.25}",
]  # fmt: skip
HEAD_REJECT = [
    "music: {bed: drone, duck: 50dB}", "music: {bed: drone, level: +6dB}", "music: yes",
    "music: true", "music: {bed: drone, fade: 11m}", "voice: {sentence_pause: 10.5s}",
    "voice: {engine: piperr}", "variables: {consent: true}",
]  # fmt: skip
STEPS = """\
title: Steps
sections:
  - title: Settling
    steps:
      - say: Hello.
      - {tail}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[YamlLanguageServer]:
    """One server for the module. The server puts `**/` before every glob, so this one
    matches a scripts/ folder anywhere, tmp_path's too."""
    schemas = {schema_path().as_uri(): ["scripts/*.yaml"]}
    with YamlLanguageServer(tmp_path_factory.mktemp("workspace"), schemas) as server:
        yield server


def _script(tmp_path: Path, text: str, name: str = "session.yaml") -> Path:
    path = tmp_path / "scripts" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@needs_server
@pytest.mark.parametrize("bundled", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_bundled_scripts_are_clean_in_an_editor(
    server: YamlLanguageServer, tmp_path: Path, bundled: Path
) -> None:
    copy = _script(tmp_path, bundled.read_text(encoding="utf-8"), bundled.name)
    assert server.diagnostics(copy) == []
    assert server.schemas_for(copy) == [schema_path().as_uri()]  # or no schema passes too


@needs_server
def test_the_checkouts_editor_settings_apply_the_schema_to_its_scripts() -> None:
    settings = json.loads((ROOT / ".vscode" / "settings.json").read_text(encoding="utf-8"))
    with YamlLanguageServer(ROOT, settings["yaml.schemas"]) as server:  # "./src/..." from ROOT
        script = ROOT / "scripts" / "box-breathing.yaml"
        assert server.schemas_for(script) == [
            (ROOT / "src" / "guided_audio" / "script.schema.json").as_uri()
        ]
        assert server.diagnostics(script) == []


@needs_server
def test_a_new_script_finds_the_schema_through_its_first_line(
    server: YamlLanguageServer, tmp_path: Path
) -> None:
    result = cli("new", str(tmp_path / "evening"))  # not in a scripts/ folder
    assert result.exit_code == 0, result.output
    path = tmp_path / "evening.yaml"
    assert server.schemas_for(path) == [schema_path().as_uri()]
    assert server.diagnostics(path) == []


@needs_server
def test_a_wrong_duration_is_underlined_where_the_validator_points(
    server: YamlLanguageServer, tmp_path: Path
) -> None:
    path = _script(tmp_path, STEPS.format(tail='pause: "7 seconds"'))
    [diagnostic] = server.diagnostics(path)
    assert (diagnostic.line, diagnostic.column) == (6, 16), diagnostic
    assert (diagnostic.end_line, diagnostic.end_column) == (6, 27), diagnostic  # the quotes too
    result = cli("validate", str(path))
    assert result.exit_code == 2
    found = re.match(rf"{re.escape(str(path))}:(\d+):(\d+): ", result.stderr)
    assert found, result.stderr
    assert (int(found[1]), int(found[2])) == (diagnostic.line, diagnostic.column)


@needs_server
def test_completion_in_a_steps_list_offers_the_step_kinds(
    server: YamlLanguageServer, tmp_path: Path
) -> None:
    path = tmp_path / "scripts" / "typing.yaml"  # never written: the editor's unsaved text
    after_dash = server.completions(path, STEPS.format(tail=""), line=6, column=9)
    after_b = server.completions(path, STEPS.format(tail="b"), line=6, column=10)
    for typed, items in (("- ", after_dash), ("- b", after_b)):
        print(f"after {typed!r}:")
        for item in items:
            print(f"  {item.label!r} {item.kind} {item.insert_text!r} {item.documentation!r}")
    # Each kind once, as a property, with the grammar's words; accepting one writes `kind:`.
    # What else comes, and what `- b` gets, depends on how the schema states a step.
    properties = {item.label: item for item in after_dash if item.kind == "Property"}
    assert list(properties) == [k.name for k in grammar.STEPS]
    for k in grammar.STEPS:
        assert properties[k.name].documentation == k.doc
        assert (properties[k.name].insert_text or "").startswith(f"{k.name}:")


def _validate_says(path: Path) -> list[tuple[int, int]]:
    """Where `validate` points, or [] if it accepts the script."""
    result = cli("validate", str(path))
    assert result.exit_code in (0, 2), result.output
    found = re.findall(rf"^{re.escape(str(path))}:(\d+):(\d+): ", result.stderr, re.MULTILINE)
    return [(int(line), int(column)) for line, column in found]


@needs_server
@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_the_editor_and_validate_agree_on_every_invalid_fixture(
    server: YamlLanguageServer, tmp_path: Path, path: Path
) -> None:
    copy = _script(tmp_path, path.read_text(encoding="utf-8"), path.name)
    diagnostics = server.diagnostics(copy)
    flagged = EDITOR_PARSER.get(path.stem, path.stem not in BEYOND_A_SCHEMA)
    if not flagged:
        assert diagnostics == [], f"the editor now flags {path.stem}: drop it from the list"
        return
    assert diagnostics, f"validate rejects {path.stem}; the editor accepts it"
    if path.stem not in ELSEWHERE:
        expected = [
            tuple(int(n) for n in line.removeprefix("# expect: ").split(":")[:2])
            for line in path.read_text(encoding="utf-8").splitlines()
            if line.startswith("# expect: ")
        ]
        marked = {(d.line, d.column) for d in diagnostics}
        assert set(expected) <= marked, (expected, diagnostics)


def _agree(server: YamlLanguageServer, path: Path, accepted: bool) -> None:
    diagnostics = server.diagnostics(path)
    where = _validate_says(path)
    assert (diagnostics == []) == accepted, diagnostics
    assert (where == []) == accepted, where
    if not accepted:
        assert where[0] in {(d.line, d.column) for d in diagnostics}, (where, diagnostics)


@needs_server
@pytest.mark.parametrize(
    ("step", "accepted"),
    [(s, True) for s in BOTH_ACCEPT] + [(s, False) for s in BOTH_REJECT],
)
def test_a_step_is_read_alike(
    server: YamlLanguageServer, tmp_path: Path, step: str, accepted: bool
) -> None:
    _agree(server, _script(tmp_path, STEPS.format(tail=step)), accepted)


@needs_server
@pytest.mark.parametrize(
    ("head", "accepted"),
    [(h, True) for h in HEAD_ACCEPT] + [(h, False) for h in HEAD_REJECT],
)
def test_a_scripts_keys_are_read_alike(
    server: YamlLanguageServer, tmp_path: Path, head: str, accepted: bool
) -> None:
    _agree(server, _script(tmp_path, SCRIPT_LEVEL.format(head=head)), accepted)


@needs_server
@pytest.mark.parametrize(
    ("step", "message"),
    [
        ('pause: "7 seconds"', "pause: expected a duration like 7s or 1m30s, up to 1h00m"),
        ("pause: 2h", "pause: expected a duration like 7s or 1m30s, up to 1h00m"),
        ("breath: {pattern: box, cycles: 2}", "a step is one of: " + ", ".join(
            k.name for k in grammar.STEPS)),
        ("bell: bowel", "expected a bell: bowl, chime or gong, or a mapping"),
        ("say: true", "say: expected text to say"),
    ],
)  # fmt: skip
def test_the_editor_names_the_kind_of_value_wanted_and_nothing_else(
    server: YamlLanguageServer, tmp_path: Path, step: str, message: str
) -> None:
    [diagnostic] = server.diagnostics(_script(tmp_path, STEPS.format(tail=step)))
    assert diagnostic.message == message


@needs_server
@pytest.mark.parametrize(
    ("typed", "kinds"),
    [("", [k.name for k in grammar.STEPS]), ("b", ["breathe", "bell", "bilateral"]),
     ("s", ["say", "sound"]), ("r", ["reflect"]), ("p", ["pause"])],
)  # fmt: skip
def test_typing_a_step_offers_the_kinds_that_match(
    server: YamlLanguageServer, tmp_path: Path, typed: str, kinds: list[str]
) -> None:
    """As an editor filters what the server offers: by the word typed so far."""
    path = tmp_path / "scripts" / "typing.yaml"
    items = server.completions(path, STEPS.format(tail=typed), line=6, column=9 + len(typed))
    offered = [i for i in items if (i.raw.get("filterText") or i.label).startswith(typed)]
    assert [i.label for i in offered] == kinds
    docs = {k.name: k.doc for k in grammar.STEPS}
    assert all(i.kind == "Property" and i.documentation == docs[i.label] for i in offered)
    pause = [i for i in items if i.label == "pause"]
    if pause:  # what accepting it writes is a value the schema accepts
        assert pause[0].insert_text == "pause: ${1:10s}"


def test_a_missing_server_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(LanguageServerError, match=r"cd tests/editor && npm ci"):
        YamlLanguageServer(tmp_path, {}).start()
