"""The project's shape holds: no import circle among its modules, no Ray in core/ nor on the paths that only
read a finished sweep or run an exported model, and no function over 50 statements in core/ or tune/."""

import ast
import sys
from pathlib import Path

from conftest import LIGHT_SWEEP_MODULES, heavy_modules_imported

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "tune")
# Statements, not lines: ruff format wraps one call over many lines (an argparse option is one statement and
# five lines), so a line count measures the formatter. 50 statements is what 60 unwrapped lines held.
MAX_FUNCTION_STATEMENTS = 50


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The project modules `path` imports, anywhere in the file (an import inside a function is still one)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        out.update(n for n in names if n in known)
    return out


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1 visiting, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_itself_through_others():
    found = modules()
    # A package's __init__ is imported before its modules; an edge to it is not a dependency on them.
    graph = {name: {m for m in imports_of(path, set(found)) if m != name} for name, path in found.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_core_never_imports_ray():
    for name, path in modules().items():
        if name.startswith("core"):
            text = path.read_text()
            assert "import ray" not in text and "from ray" not in text, name


def test_no_function_is_longer_than_fifty_statements():
    long = []
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                statements = len({s.lineno for s in ast.walk(node) if isinstance(s, ast.stmt)})
                if statements > MAX_FUNCTION_STATEMENTS:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({statements} statements)")
    assert not long, long


def test_a_missing_sweep_is_reported_without_importing_ray_or_the_sweep():
    for module, args in (("tune.best", ["show", "--sweep", "nowhere"]), ("tune.report", ["--sweep", "nowhere"])):
        bad, output = heavy_modules_imported(module, args)
        assert bad == [] and "nowhere" in output, output[-2000:]


def test_the_light_part_of_the_ray_boundary_imports_only_the_standard_library():
    """Readers of a sweep import these (Ray's file names and rules): nothing of Ray, nor of the sweep driver,
    may come with them."""
    found = modules()
    for name in LIGHT_SWEEP_MODULES:
        imported = set()
        for node in ast.walk(ast.parse(found[name].read_text())):
            if isinstance(node, ast.Import):
                imported.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0 and node.module, f"{name}: a relative import"
                imported.add(node.module.split(".")[0])
        assert imported <= set(sys.stdlib_module_names) | {"__future__"}, (name, sorted(imported))
