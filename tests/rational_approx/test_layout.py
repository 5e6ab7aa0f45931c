"""The package layout shows the data flow: a module imports only from the stages before it (STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import rational_approx

STAGES = {"errors": 0, "representation": 1, "fitting": 2, "verification": 3, "plotting": 4, "cli": 5, "cliutil": 5,
          "__init__": 6, "__main__": 6}
# Known exception: run_study(figure=...) draws through plotting (a lazy import inside the function).
ALLOWED = {("verification/study.py", "plotting")}


def test_modules_import_only_from_earlier_stages():
    root = Path(rational_approx.__file__).parent
    backward = []
    for path in root.rglob("*.py"):
        rel = path.relative_to(root)
        stage = STAGES[rel.parts[0].removesuffix(".py")]
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rational_approx."):
                target = node.module.split(".")[1]
                if STAGES.get(target, 99) > stage and (rel.as_posix(), target) not in ALLOWED:
                    backward.append(f"{rel} imports {node.module}")
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rational_approx"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{rel} imports private names {private} from {node.module}"
    assert backward == []


def test_no_torch():
    root = Path(rational_approx.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not any(m == "torch" or m.startswith("torch.") for m in names), path
