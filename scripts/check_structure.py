"""Structure limits of a package (default `harness`): no function longer than 60 lines, no class
longer than 200, and no import cycle among its modules (imports inside functions included).
`python scripts/check_structure.py [package ...]` prints each breach and exits 1 if any."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

MAX_FUNCTION, MAX_CLASS = 60, 200
ROOT = Path(__file__).resolve().parents[1]


def long_definitions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        limit = MAX_CLASS if isinstance(node, ast.ClassDef) else \
            MAX_FUNCTION if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) else None
        if limit is None:
            continue
        start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
        n = node.end_lineno - start + 1
        if n > limit:
            out.append(f"{path.relative_to(ROOT)}:{start}: {node.name} is {n} lines (limit {limit})")
    return out


def imports_of(path: Path, package: str, modules: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names] if isinstance(node, ast.ImportFrom) \
            and node.level == 0 else []
        found |= {n for n in names if n in modules}
    return found


def cycles(package: str) -> list[list[str]]:
    files = {f"{package}.{p.stem}": p for p in (ROOT / package).glob("*.py") if p.stem != "__init__"}
    graph = {m: imports_of(p, package, set(files)) - {m} for m, p in files.items()}
    found, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for n in sorted(graph[m]):
            if state.get(n) == "open":
                found.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n, stack + [n])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    return found


def breaches(package: str = "harness") -> list[str]:
    out = [b for p in sorted((ROOT / package).glob("*.py")) for b in long_definitions(p)]
    out += [f"import cycle: {' -> '.join(c)}" for c in cycles(package)]
    return out


if __name__ == "__main__":
    found = [b for pkg in (sys.argv[1:] or ["harness"]) for b in breaches(pkg)]
    print("\n".join(found) or "no breach")
    sys.exit(1 if found else 0)
