"""The authoring kit: one grammar behind the validator, the JSON Schema, the `new` starter and
the docs' format table; `list` and `new` on a real folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from conftest import BEYOND_A_SCHEMA, cli, write
from guided_audio import session
from guided_audio.script import authoring, grammar, yamlnode
from guided_audio.script.yamlnode import BOOL, INT, NULL, Node
from guided_audio.session import Options, Silent, load_with_voices

ROOT = Path(__file__).parent.parent
BUNDLED = sorted((ROOT / "scripts").glob("*.yaml"))
FIXTURES = sorted((ROOT / "tests" / "fixtures" / "invalid").glob("*.yaml"))
VALIDATOR = jsonschema.Draft202012Validator(authoring.json_schema())


def _data(node: Node) -> Any:
    """A node as the data an editor's YAML 1.2 parser makes of it (a later equal key wins)."""
    if node.is_mapping:
        return {name: _data(value) for name, _, value in node.items(unique=False)}
    if node.is_sequence:
        return [_data(element) for element in node.elements()]
    if node.tag == BOOL:
        return str(node.raw.value).lower() == "true"
    if node.tag == NULL:
        return None
    number = node.numeric()
    if number is not None:
        return int(number) if node.tag == INT else number
    return str(node.raw.value)


def _schema_errors(path: Path) -> list[str]:
    root = yamlnode.load(path)
    if isinstance(root, list):
        raise yaml.YAMLError(root[0].message)
    return [error.message for error in VALIDATOR.iter_errors(_data(root))]


def test_the_shipped_schema_is_generated_from_the_grammar() -> None:
    assert authoring.shipped_schema() == authoring.schema_text(), (
        "regenerate: python -c 'from guided_audio.script import authoring; "
        'print(authoring.schema_text(), end="")\' > src/guided_audio/script.schema.json'
    )
    jsonschema.Draft202012Validator.check_schema(authoring.json_schema())


def test_schema_command_prints_it() -> None:
    result = cli("schema")
    assert result.exit_code == 0
    assert result.stdout == authoring.shipped_schema()


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in BUNDLED])
def test_bundled_scripts_pass_the_schema_wherever_they_are_copied(path: Path) -> None:
    """No path to the schema inside them, which a copy elsewhere would break: the
    checkout's editor settings map scripts/*.yaml to it (.vscode/settings.json)."""
    assert _schema_errors(path) == []
    assert "yaml-language-server" not in path.read_text(encoding="utf-8")


def test_the_checkouts_editor_settings_map_the_library_to_the_schema() -> None:
    settings = json.loads((ROOT / ".vscode" / "settings.json").read_text(encoding="utf-8"))
    [(schema, globs)] = settings["yaml.schemas"].items()
    assert (ROOT / schema).resolve() == authoring.schema_path().resolve()
    assert globs == ["scripts/*.yaml"]


def test_schema_tells_where_it_is_installed() -> None:
    path = cli("schema", "--path").stdout.strip()
    assert Path(path).read_text(encoding="utf-8") == authoring.shipped_schema()
    modeline = cli("schema", "--modeline").stdout.strip()
    assert modeline == f"# yaml-language-server: $schema={Path(path).as_uri()}"


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in FIXTURES])
def test_schema_and_validator_agree_on_every_fixture(path: Path) -> None:
    try:
        errors = _schema_errors(path)
    except yaml.YAMLError:
        return  # not YAML at all (syntax, tabs, python tags): nothing for a schema to say
    if path.stem in BEYOND_A_SCHEMA:
        assert errors == [], f"the schema now rejects {path.stem}: drop it from the list"
    else:
        assert errors, f"the validator rejects {path.stem} but the schema accepts it"


def test_the_list_of_exceptions_names_real_fixtures() -> None:
    assert set(BEYOND_A_SCHEMA) <= {p.stem for p in FIXTURES}


@pytest.mark.slow
def test_new_writes_a_starter_that_validates(tmp_path: Path) -> None:
    result = cli("new", str(tmp_path / "evening-wind-down"))
    assert result.exit_code == 0, result.output
    path = tmp_path / "evening-wind-down.yaml"
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0] == authoring.modeline(authoring.schema_path().as_uri())
    assert 'title: "Evening wind down"' in text
    assert _schema_errors(path) == []
    checked = cli("validate", str(path))
    assert checked.exit_code == 0, checked.output
    for k in grammar.VOICE:  # every voice key is shown with its default or as a comment
        assert f"  {k.name}: " in text or f"  # {k.name}: " in text


def test_new_refuses_to_overwrite(tmp_path: Path) -> None:
    path = write(tmp_path, "title: Mine\n", "mine.yaml")
    result = cli("new", str(path))
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"{path} already exists; choose another name (nothing was written)"
    )
    assert path.read_text(encoding="utf-8") == "title: Mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.yaml"]


def test_list_shows_the_library_and_invalid_scripts_as_invalid(tmp_path: Path) -> None:
    write(
        tmp_path,
        "title: Fine\ndescription: A short one.\nsections:\n  - title: A\n    steps:\n"
        "      - pause: 1m\n  - title: B\n    steps:\n      - pause: 30s\n",
        "fine.yaml",
    )
    broken = "title: Broken\nsections:\n  - title: A\n    steps:\n      - pause: 7 parsecs\n"
    write(tmp_path, broken, "broken.yaml")
    result = cli("list", str(tmp_path))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].startswith("broken.yaml") and " INVALID  " in lines[0]
    assert lines[0].endswith("5:16: expected a duration like 7s or 1m30s, found '7 parsecs' "
                             "(7, 7s, 500ms, 2m, 1h)")  # fmt: skip
    assert lines[1].split() == ["fine.yaml", "01:32", "0:47-6:02", "2", "sections", "Fine"]
    assert lines[2].strip() == "A short one."


def test_the_docs_format_table_is_the_grammars() -> None:
    docs = (ROOT / "docs" / "writing-scripts.md").read_text(encoding="utf-8")
    start, end = "<!-- format table: generated -->\n", "<!-- end of format table -->"
    table = docs[docs.index(start) + len(start) : docs.index(end)]
    assert table == authoring.format_table(), (
        "regenerate the table in docs/writing-scripts.md from authoring.format_table()"
    )


LONG_SILENCE_S = 20.0


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem) for p in BUNDLED])
@pytest.mark.slow
def test_bundled_sessions_are_written_with_care(path: Path) -> None:
    # Who wrote it and what it is; an opening that says the listener may stop; every long
    # silence carried by a bed (so no one wonders whether the audio stopped).
    from guided_audio.script.model import Say

    script = load_with_voices(path)
    assert script.title and script.description and script.author
    first_said = next(
        step.kind.text
        for section in script.sections
        for step in section.steps
        if isinstance(step.kind, Say)
    )
    assert "stop at any time" in first_said, first_said
    timeline = session.timeline(path, Options(), Silent())
    sounds = sorted(
        [(e.start, e.end) for e in timeline.events] + [(b.start, b.end) for b in timeline.breaths]
    )
    reach = sounds[0][1]
    for start, end in sounds[1:]:
        if start - reach >= LONG_SILENCE_S * 44100:
            assert any(b.start <= reach and start <= b.end for b in timeline.beds), (
                f"{path.stem}: a {(start - reach) / 44100:.0f} s silence at {reach / 44100:.0f} s "
                "has no bed under it"
            )
        reach = max(reach, end)


def test_the_library_has_at_least_twelve_sessions() -> None:
    assert len(BUNDLED) >= 12
