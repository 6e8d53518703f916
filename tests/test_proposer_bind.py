"""A proposer is bound to its problem and seed once, before the first ask: the run seed enters by
one door (``Proposer.bind``, called by the optimizer), is recorded once (the run's), and runs
stored while the meta-prompt's config also held it resume as they ran."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from llmopt import Budget, Optimizer, RunResult, RunStore
from llmopt.metaprompt import MetaPromptConfig, build_meta_prompt
from llmopt.proposers import LLMProposer, OptunaProposer
from llmopt.store import StoreError
from llmopt.testing import ScriptedLLM
from problems.linear_regression.problem import LinearRegression


def pairs(prompt: str, seed: int) -> str:
    return f"[{10 + seed % 7}, {12 + seed % 5}]"


def test_an_llm_proposer_built_directly_shuffles_with_the_runs_seed() -> None:
    problem = LinearRegression(seed=0)
    meta = MetaPromptConfig(order="random")
    prompts = {}
    for seed in (0, 3):
        opt = Optimizer(problem, LLMProposer(ScriptedLLM(pairs), meta, structured="off"), seed=seed,
                        budget=Budget(max_steps=2, stop_when_solved=False))
        opt.run()
        assert opt.proposer.seed == seed
        prompt = opt.proposer.begin_step(problem, opt.history, 3)
        assert prompt == build_meta_prompt(problem, opt.history, opt.proposer.metaprompt, seed=seed)
        prompts[seed] = (prompt, build_meta_prompt(problem, opt.history, opt.proposer.metaprompt, seed=seed + 1))
    assert prompts[3][0] != prompts[3][1]  # the seed orders the exemplars: seed 3's are not seed 4's
    assert "shuffle_seed" not in opt.config()["proposer"]["metaprompt"]  # the seed is recorded once, the run's


def test_optunas_sampler_takes_its_seed_when_bound() -> None:
    pytest.importorskip("optuna")
    problem = LinearRegression(seed=0)
    proposer = OptunaProposer("tpe")
    assert proposer.study is None
    with pytest.raises(ValueError, match="bind"):
        proposer.propose(problem, None, [0], seed=0)
    proposer.bind(problem, 7)
    assert proposer.study is not None and proposer.seed == 7

    def asked(seed: int) -> list:
        opt = Optimizer(problem, OptunaProposer("tpe"), seed=seed, budget=Budget(max_steps=2, stop_when_solved=False))
        opt.run()
        return [t.text for t in opt.history if t.source == "optuna:tpe"]

    assert asked(7) == asked(7) and asked(7) != asked(8)


def _rewrite_config(path: Path, name: str, change) -> None:
    with sqlite3.connect(path) as db:
        (text,) = db.execute("SELECT config FROM runs WHERE name = ?", (name,)).fetchone()
        config = json.loads(text)
        change(config)
        db.execute("UPDATE runs SET config = ? WHERE name = ?", (json.dumps(config, sort_keys=True), name))


def _run(store: RunStore, steps: int, resume: bool, per_call: int = 1, seed: int = 2) -> RunResult:
    proposer = LLMProposer(ScriptedLLM(pairs), structured="off", per_call=per_call)
    opt = Optimizer(LinearRegression(seed=0), proposer, seed=seed, store=store, name="r", resume=resume,
                    budget=Budget(max_steps=steps, stop_when_solved=False), proposals_per_step=2)
    return opt.run()


def test_a_run_recorded_with_the_seed_in_its_meta_prompt_config_resumes(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with RunStore(str(path)) as store:
        _run(store, 1, resume=False)

    def old_shape(config: dict) -> None:  # as llmopt recorded it before the seed was bound once
        config["proposer"]["metaprompt"]["shuffle_seed"] = 2
        config["proposer"]["metaprompt"]["per_call"] = 1

    _rewrite_config(path, "r", old_shape)
    with RunStore(str(path)) as store:
        assert _run(store, 2, resume=True).steps == 2


def test_a_run_whose_recorded_shuffle_seed_was_not_its_seed_is_refused_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    with RunStore(str(path)) as store:
        _run(store, 1, resume=False)
    _rewrite_config(path, "r", lambda c: c["proposer"]["metaprompt"].update(shuffle_seed=0))
    with RunStore(str(path)) as store, pytest.raises(StoreError, match="different settings.*shuffle_seed"):
        _run(store, 2, resume=True)
