"""One registry of proposers: the ``llmopt.proposers`` entry points feed the command line, grids
and ``llmopt.minimize``; each proposer's options are its own (shown with it, refused without it);
a proposer from a throwaway installed package works with no change in llmopt."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import llmopt
from llmopt.cli import main
from llmopt.proposers import registry
from llmopt.store import RunStore
from llmopt.testing import ScriptedLLM

BUILTIN = ("llm", "llm-iid", "llm-scs", "random", "optuna:tpe", "optuna:cmaes", "evoprompt-ga", "evoprompt-de")
SPACE = {"type": "object", "properties": {"x": {"type": "integer", "minimum": -9, "maximum": 9}}, "required": ["x"]}
ROOT = Path(__file__).resolve().parent.parent

# A third party's proposer, in its own package: random search that draws `width` values and keeps the
# one nearest zero (a toy), with one option of its own.
TOY = '''
from llmopt.proposers import Proposal, Proposer
from llmopt.proposers.registry import Option, ProposerSpec, positive_int
from llmopt.seeding import stream


class ToyRandom(Proposer):
    kind = "toy-random"

    def __init__(self, width):
        self.width = width

    @property
    def source(self):
        return "toy"

    def propose(self, problem, prompt, numbers, seed, on_call=None):
        return [Proposal(n, "toy", solution=problem.random_solution(stream(self.seed, "toy", n))) for n in numbers]

    def config(self):
        return {"kind": self.kind, "width": self.width}


SPEC = ProposerSpec("toy-random", lambda o, llm, problem: ToyRandom(o["toy_width"]), help="a toy",
                    options=(Option("toy-width", positive_int, 1, help="values drawn per proposal (default 1)"),))
'''


def toy_package(root: Path) -> Path:
    """``toyprop`` in ``root``, installed there as pip would (a dist-info with its entry points)."""
    (root / "toyprop").mkdir(parents=True)
    (root / "toyprop" / "__init__.py").write_text(TOY)
    info = root / "toyprop-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toyprop\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[llmopt.proposers]\ntoy-random = toyprop:SPEC\n")
    return root


def objective_files(root: Path) -> list[str]:
    (root / "objective_mod.py").write_text("def f(v):\n    return (v['x'] - 3) ** 2\n")
    (root / "space.json").write_text(json.dumps(SPACE))
    return ["--objective", "objective_mod:f", "--schema", str(root / "space.json")]


def llmopt_cli(args: list[str], cwd: Path, plugin: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "llmopt.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_llmopts_own_proposers_are_registered_through_the_entry_points() -> None:
    assert set(BUILTIN) <= set(registry.names()) and registry.names()[0] == "llm"
    assert all(registry.get(name).name == name for name in BUILTIN)
    with pytest.raises(ValueError, match="unknown proposer 'annealing'.*optuna:tpe"):
        registry.get("annealing")


def options_shown(text: str) -> set[str]:
    """The flags a --help lists as options (each at the start of its entry)."""
    return set(re.findall(r"^  (--[a-z][a-z-]*)", text, re.M))


def test_help_shows_the_chosen_proposers_options_only(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["run", "function", "--proposer", "random", "--help"])
    random_help = capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["run", "function", "--help"])
    default_help = capsys.readouterr().out
    shown, default = options_shown(random_help), options_shown(default_help)
    assert not shown & {"--population", "--show", "--per-call", "--selection", "--structured", "--temperature"}
    assert {"--objective", "--steps", "--proposer", "--local-threads"} <= shown  # the problem's and the run's
    assert {"--show", "--per-call", "--structured", "--temperature"} <= default and "--population" not in default
    assert all(name in default_help for name in BUILTIN)  # the names are listed
    # 204 lines before; 209 before map-elites, whose name lengthens the usage and --proposer's help by a line
    assert len(random_help.splitlines()) < 130 and len(default_help.splitlines()) < 211
    with pytest.raises(SystemExit):
        main(["run", "linreg", "--proposer", "evoprompt-de", "--help"])
    de = options_shown(capsys.readouterr().out)
    assert {"--donor", "--population", "--temperature"} <= de and not de & {"--selection", "--show", "--per-call"}


@pytest.mark.parametrize("argv, line", [
    (["--proposer", "random", "--population", "4"], "--population 4: not an option of --proposer random"),
    (["--population", "4", "--proposer", "random"], "--population 4: not an option of --proposer random"),
    (["--proposer", "optuna:tpe", "--no-cache"], "--no-cache: not an option of --proposer optuna:tpe"),
    (["--proposer", "evoprompt-ga", "--donor", "best"], "--donor best: not an option of --proposer evoprompt-ga"),
    (["--per-call", "2", "--proposer", "evoprompt-de"], "--per-call 2: not an option of --proposer evoprompt-de"),
])
def test_another_proposers_option_is_refused_in_one_line(tmp_path: Path, capsys, argv: list[str], line: str) -> None:
    store = tmp_path / "r.db"
    assert main(["run", "linreg", *argv, "--store", str(store), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert line in err and len(err.strip().splitlines()) == 1
    assert not store.exists()  # refused before anything was created


def test_a_grid_gets_the_same_refusal(tmp_path: Path, capsys) -> None:
    grid = tmp_path / "g.toml"
    grid.write_text('seeds = 1\n[defaults]\nsteps = 1\npopulation = 4\n[problems.linreg]\n'
                    '[configs.ga]\nproposer = "evoprompt-ga"\n[configs.random]\nproposer = "random"\n')
    assert main(["compare", str(grid), "--store", str(tmp_path / "g.db"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("g.toml: defaults.population 4: not an option of --proposer random (its options: none)")
    assert len(err.splitlines()) == 1


def test_the_shipped_grids_parse_with_every_option_their_proposer_has() -> None:
    from llmopt.cli.run_options import parse_cell
    from llmopt.experiments.grid import load_grid

    for path in sorted((ROOT / "experiments").glob("*.toml")):
        grid = load_grid(str(path))
        for cell in grid.cells():
            parse_cell(cell, grid)  # raises GridError on an option the cell's proposer does not have


def test_minimize_takes_a_proposers_options_by_name_and_refuses_others() -> None:
    result = llmopt.minimize(lambda v: (v["x"] - 3) ** 2, SPACE, proposer="random", steps=2, progress=False)
    assert result.steps == 2
    with pytest.raises(ValueError, match="--population 4: not an option of --proposer random"):
        llmopt.minimize(lambda v: 0.0, SPACE, proposer="random", proposer_options={"population": 4}, progress=False)
    with pytest.raises(ValueError, match="--population: must be >= 1, got 0"):
        llmopt.minimize(lambda v: 0.0, SPACE, proposer="evoprompt-ga", model=ScriptedLLM(["x"]),
                        proposer_options={"population": 0}, progress=False)


@pytest.mark.slow
def test_a_proposer_from_an_installed_package_runs_from_the_command_line(tmp_path: Path) -> None:
    plugin = toy_package(tmp_path / "site")
    flags = objective_files(tmp_path)
    store = str(tmp_path / "toy.db")
    ran = llmopt_cli(["run", "function", *flags, "--proposer", "toy-random", "--toy-width", "3", "--steps", "2",
                      "--store", store, "--quiet"], tmp_path, plugin)
    assert ran.returncode == 0, ran.stderr
    with RunStore(store, readonly=True) as s:
        (run,) = s.runs()
        assert run.name == "function-toy-random-seed0" and run.config["proposer"] == {"kind": "toy-random", "width": 3}
        assert {t.source for t in s.trials(run.id)} == {"start", "toy"}
    helped = llmopt_cli(["run", "function", "--proposer", "toy-random", "--help"], tmp_path, plugin)
    assert "toy-random: a toy" in helped.stdout
    assert "--toy-width" in options_shown(helped.stdout) and "--show" not in options_shown(helped.stdout)
    refused = llmopt_cli(["run", "function", *flags, "--proposer", "toy-random", "--population", "2"], tmp_path, plugin)
    assert refused.returncode == 2 and refused.stderr.strip() == (
        "llmopt: error: --population 2: not an option of --proposer toy-random (its options: --toy-width)")
    other = llmopt_cli(["run", "function", *flags, "--proposer", "random", "--toy-width", "2"], tmp_path, plugin)
    assert other.returncode == 2 and "--toy-width 2: not an option of --proposer random" in other.stderr


def test_a_proposer_from_an_installed_package_runs_from_python(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(toy_package(tmp_path)))
    result = llmopt.minimize(lambda v: abs(v["x"]), SPACE, proposer="toy-random", proposer_options={"toy_width": 2},
                             steps=2, seed=5, progress=False)
    assert result.steps == 2 and {t.source for t in result.history} == {"start", "toy"}
    with pytest.raises(ValueError, match="--width 2: not an option of --proposer toy-random"):
        llmopt.minimize(lambda v: 0.0, SPACE, proposer="toy-random", proposer_options={"width": 2}, progress=False)


def test_a_broken_plugin_is_named_in_one_line_and_does_not_take_the_others_down(tmp_path: Path, capsys,
                                                                                  monkeypatch) -> None:
    info = tmp_path / "brokenprop-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: brokenprop\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[llmopt.proposers]\nbroken = no_such_module_for_llmopt:SPEC\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main(["run", "linreg", "--proposer", "broken", "--store", str(tmp_path / "b.db"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "proposer 'broken' (no_such_module_for_llmopt:SPEC) cannot be loaded: ModuleNotFoundError" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "b.db").exists()
    assert main(["run", "linreg", "--proposer", "random", "--steps", "1", "--store", str(tmp_path / "r.db"),
                 "--quiet"]) == 0
