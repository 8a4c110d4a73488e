"""The shape of the code that docs/architecture.md promises: packages import one way, no module is a
catch-all, and the run's orchestration names no method."""

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "bequest"

# package -> packages it must never import (at module level or inside a function)
FORBIDDEN = {
    "models": {"objectives", "init", "train", "kinds", "pipeline", "distil", "workload", "config"},
    "objectives": {"init", "train", "pipeline", "distil", "workload"},
    "init": {"train", "pipeline", "distil", "workload"},
    "kinds": {"objectives", "init", "train", "pipeline", "distil", "workload"},
    "data": {"objectives", "init", "train", "pipeline", "distil", "workload", "eval"},
    "eval": {"objectives", "init", "train", "pipeline", "distil", "workload"},
    "report": {"pipeline", "distil", "workload", "train", "models", "init", "objectives", "kinds"},
}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {name.split(".")[1] for name in names if name.startswith("bequest.") and name.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_packages_import_one_way(package):
    files = list((PACKAGE / package).rglob("*.py")) if (PACKAGE / package).is_dir() else [PACKAGE / f"{package}.py"]
    assert files
    for path in files:
        wrong = _imports(path) & FORBIDDEN[package]
        assert not wrong, f"{path.relative_to(PACKAGE)} imports bequest.{sorted(wrong)}"


def test_no_module_is_over_400_lines():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long


@pytest.mark.parametrize("module", ["pipeline.py", "distil.py", "workload.py"])
def test_the_orchestration_names_no_method(module):
    code = "\n".join(line for line in (PACKAGE / module).read_text().splitlines() if not line.lstrip().startswith("#"))
    found = re.findall(r"\b(sps|wid|Compacting|ptp|mlm|squad|etd|extract)\b", code, flags=re.IGNORECASE)
    assert not found, f"{module} names {sorted(set(found))}"
