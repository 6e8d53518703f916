"""The suite's own rules, checked: CI runs the README's command, prints the slowest tests, and the
test modules share helpers through tests/harness.py and conftest.py, never through each other."""

from __future__ import annotations

import ast
import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent


def _readme_command() -> str:
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines() if ".venv/bin/python -m pytest" in ln)
    return line.split("&& ")[-1].strip()


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_command() in [ln.strip() for ln in ci], (_readme_command(), ci[-3:])
    docs = (ROOT / "docs" / "reliability.md").read_text()
    assert _readme_command() in docs


def test_every_run_prints_the_25_slowest_tests() -> None:
    addopts = re.search(r'^addopts = "([^"]*)"', (ROOT / "pyproject.toml").read_text(), re.M)
    assert addopts and "--durations=25" in addopts.group(1).split()


def test_no_test_module_imports_another_and_none_leaves_temporary_folders() -> None:
    modules = sorted(TESTS.glob("test_*.py"))
    names = {p.stem for p in modules}
    for path in [*modules, *TESTS.glob("scripts/*.py"), *(p for p in TESTS.glob("*.py") if p not in modules)]:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module:
                assert node.module.split(".")[0] not in names, f"{path.name} imports {node.module}"
            elif isinstance(node, ast.Import):
                assert not {a.name.split(".")[0] for a in node.names} & names, f"{path.name} imports a test module"
            elif isinstance(node, ast.Attribute) and node.attr in ("mkdtemp", "mkstemp"):
                assert False, f"{path.name}:{node.lineno} uses tempfile.{node.attr}: use pytest's tmp_path"
