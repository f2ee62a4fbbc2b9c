"""The tree shows the pipeline: stages import only earlier stages, no module reaches into
another's private names, each holds one idea (a docstring says which) in at most 450 lines,
and every program run in a subprocess is a module of its own."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "guided_audio"
TESTS = Path(__file__).parent
MAX_LINES = 450
NAMEDTUPLE_API = {"_fields", "_replace", "_asdict", "_make"}  # public, despite the underscore
# Earlier stages first: a module may import from its own stage and any earlier one.
STAGES = {
    "__init__": 0, "errors": 0, "files": 0, "forking": 0, "memory": 0, "resources": 0,
    "script": 1, "dsp": 1,
    "plan": 2,
    "speech": 3,
    "mix": 4,
    "export": 5, "play": 5,
    "session": 6,
    "batch": 7, "audition": 7, "share": 7, "clinic": 7,
    "show": 8, "console": 8,
    "cli": 9, "commands": 9,
    "__main__": 10,
}  # fmt: skip


def _modules() -> dict[str, Path]:
    return {
        ".".join(path.relative_to(SRC.parent).with_suffix("").parts): path
        for path in sorted(SRC.rglob("*.py"))
        if path.name != "__init__.py" or path.stat().st_size
    }


def _stage(module: str) -> str:
    return module.split(".")[1]


def _imports(path: Path, top_level_only: bool) -> set[str]:
    """The guided_audio modules `path` imports (a name imported from a package that is a
    module of it counts as that module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] != "guided_audio":
                continue
            for alias in node.names:
                full = f"{node.module}.{alias.name}"
                is_module = (SRC.parent / Path(*full.split("."))).with_suffix(".py").is_file()
                found.add(full if is_module else node.module)
    return {name for name in found if name != "guided_audio"}


def test_every_stage_is_known_and_every_module_says_what_it_holds() -> None:
    for module, path in _modules().items():
        assert _stage(module) in STAGES, f"{module}: add its stage to STAGES"
        assert ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))), module


@pytest.mark.parametrize("module", sorted(_modules()))
def test_a_module_is_small_and_imports_no_later_stage(module: str) -> None:
    path = _modules()[module]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{module} has {lines} lines"
    for imported in _imports(path, top_level_only=False):
        if _stage(imported) in STAGES:
            assert STAGES[_stage(imported)] <= STAGES[_stage(module)], f"{module} -> {imported}"


def test_no_module_imports_itself_back_in_a_circle() -> None:
    graph = {m: _imports(p, top_level_only=True) for m, p in _modules().items()}
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        assert module not in path, " -> ".join([*path, module])
        if module in done:
            return
        for imported in sorted(graph.get(module, ())):
            visit(imported, [*path, module])
        done.add(module)

    for module in graph:
        visit(module, [])


def _private_uses(path: Path) -> list[str]:
    """Names starting with one underscore that `path` takes from a guided_audio module:
    imported by name, or read as an attribute of a module imported whole."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    modules, found = set(), []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("guided_audio"):
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{node.module}.{alias.name}")
                modules.add(alias.asname or alias.name)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id in modules
            and node.attr.startswith("_")
            and not node.attr.startswith("__")
            and node.attr not in NAMEDTUPLE_API
        ):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize(
    "path", [*_modules().values(), *sorted(TESTS.glob("*.py"))], ids=lambda p: p.name
)
def test_no_file_reads_another_modules_private_names(path: Path) -> None:
    assert _private_uses(path) == []


def test_the_private_name_check_sees_both_ways_of_reaching_in(tmp_path: Path) -> None:
    reaching = tmp_path / "reaching.py"
    reaching.write_text(
        "from guided_audio.mix import gain\n"
        "from guided_audio.dsp.truepeak import _oversampled\n"
        "gain._weighted(None)\n"
    )
    assert _private_uses(reaching) == [
        "guided_audio.dsp.truepeak._oversampled",
        "gain._weighted",
    ]


def test_no_program_is_kept_in_a_string() -> None:
    # A program run in a subprocess is a module (`python -m guided_audio...`), which ruff
    # and mypy read; never source text handed to `python -c`.
    for module, path in _modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        flags = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)]
        assert "-c" not in flags, module
