"""The house rules, checked on every test run: the import contract, no hidden cycles, ruff, and the
public names of ``llmopt``."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRST_PARTY = ("llmopt", "problems", "baselines")


def _tool(name: str) -> str:
    found = Path(sys.executable).with_name(name)
    path = str(found) if found.exists() else shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: pip install -e '.[test]'")
    return path


def test_the_import_contract_holds() -> None:
    """Arrows point down only (pyproject.toml's [tool.importlinter] contracts)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([_tool("lint-imports"), "--no-cache"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "0 broken" in done.stdout


def test_no_first_party_import_hides_inside_a_function() -> None:
    """An import inside a function is how a cycle hides from the contract; only third-party (heavy,
    optional) imports may sit there."""
    offenders = []
    for folder in FIRST_PARTY:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), str(path))
            for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
                for node in ast.walk(func):
                    if isinstance(node, ast.ImportFrom):
                        names = [node.module or ""] if node.level == 0 else ["."]
                    elif isinstance(node, ast.Import):
                        names = [a.name for a in node.names]
                    else:
                        continue
                    if any(n == "." or n.split(".")[0] in FIRST_PARTY for n in names):
                        offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} in {func.name}()")
    assert not offenders, "first-party imports inside functions:\n" + "\n".join(offenders)


def test_ruff_finds_nothing() -> None:
    done = subprocess.run([_tool("ruff"), "check", "--no-cache", "."], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout[-3000:]


def test_every_public_name_of_llmopt_still_imports() -> None:
    import llmopt

    names = ["Budget", "CallEvent", "Candidate", "Completion", "Direction", "LLM", "LLMConfig", "LLMConfigError",
             "LLMProposer", "MetaPromptConfig", "Optimizer", "ParseError", "Problem", "Proposal", "Proposer",
             "RandomProposer", "RunResult", "RunStore", "SolutionHistory", "StopReason", "StoreError", "Trial",
             "TrialState", "Usage", "build_meta_prompt", "load"]
    assert set(names) <= set(llmopt.__all__)
    for name in llmopt.__all__:
        assert getattr(llmopt, name) is not None
