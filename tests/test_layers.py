"""The house's floors: `flows -> stages -> stages.backends -> stages.core`, never upward, never in a loop.

Every import counts, the ones inside functions too (a lazy import is still a dependency). Also: no
stage, backend or core module imports Prefect, and no source file grows past 600 lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for d in ("flows", "stages") for p in (REPO / d).rglob("*.py"))
FLOORS = {"core": 0, "backends": 1, "stages": 2, "flows": 3}
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor(module: str) -> int:
    top, *rest = module.split(".")
    if top == "flows":
        return FLOORS["flows"]
    if rest[:1] == ["core"]:
        return FLOORS["core"]
    if rest[:1] == ["backends"]:
        return FLOORS["backends"]
    return FLOORS["stages"]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, resolved to our own module names where it is one."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            out.append((node.lineno, base))
            # `from stages.backends import animatic` imports the module stages.backends.animatic
            out += [(node.lineno, f"{base}.{a.name}") for a in node.names if _is_module(f"{base}.{a.name}")]
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (REPO / rel).with_suffix(".py").is_file() or (REPO / rel / "__init__.py").is_file()


def own(module: str) -> bool:
    return module.split(".")[0] in ("flows", "stages") and _is_module(module)


def graph() -> dict[str, set[str]]:
    return {module_name(p): {m for _, m in imports(p) if own(m) and m != module_name(p)} for p in SOURCES}


def test_no_module_imports_a_floor_above_its_own():
    upward = []
    for path in SOURCES:
        me = module_name(path)
        for line, target in imports(path):
            if own(target) and floor(target) > floor(me) and not me.startswith(target + "."):
                upward.append(f"{path.relative_to(REPO)}:{line}: {me} imports {target}")
    assert not upward, "imports that point up (flows -> stages -> backends -> core):\n" + "\n".join(upward)


def test_only_flows_import_prefect():
    found = [f"{p.relative_to(REPO)}:{line}: {m}" for p in SOURCES if floor(module_name(p)) < FLOORS["flows"]
             for line, m in imports(p) if m.split(".")[0] in ("prefect", "prefect_dask")]
    assert not found, "a stage, backend or core module imports Prefect:\n" + "\n".join(found)


def test_no_import_loops():
    edges = graph()
    loops = set()

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(edges.get(node, ())):
            if nxt in stack:
                cycle = stack[stack.index(nxt):]
                k = cycle.index(min(cycle))
                loops.add(" -> ".join(cycle[k:] + cycle[:k] + [min(cycle)]))
            elif nxt not in done:
                visit(nxt, stack + [nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start])
    assert not loops, "import loops:\n" + "\n".join(sorted(loops))


@pytest.mark.parametrize("folder", ["flows", "stages", "tests"])
def test_no_file_over_600_lines(folder):
    long = {str(p.relative_to(REPO)): n for p in (REPO / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"split these (over {MAX_LINES} lines): {long}"


def test_floors_are_read_from_module_paths():
    """The floor of a module comes from its path, and a relative import resolves like Python's."""
    assert floor("stages.core.media") < floor("stages.backends.animatic") < floor("stages.plan_shots") \
        < floor("flows.cli")
    assert own("stages.core.media") and not own("stages.nothing_here") and not own("prefect")
