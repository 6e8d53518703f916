"""The loop, end to end, with a scripted LLM (no network): budgets, stop reasons, invalid and
duplicate handling, the ask/tell API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from fakes import scripted_llm

from llmopt import Budget, LLMProposer, Optimizer, RandomProposer, RunStore, StopReason, TrialState
from problems.linear_regression.problem import LinearRegression


class CountingLR(LinearRegression):
    def __init__(self, **kw):
        super().__init__(**kw)
        self.scored: list[tuple[int, int]] = []

    def score(self, solution):
        self.scored.append(tuple(solution))
        return super().score(solution)


def opro(script=None, budget=None, **kw):
    llm, backend = scripted_llm(script) if script else scripted_llm()
    problem = kw.pop("problem", None) or CountingLR(seed=0)
    return Optimizer(problem, LLMProposer(llm), budget=budget or Budget(max_steps=5), **kw), backend, problem


def test_run_records_every_reply_and_scores_each_solution_once() -> None:
    opt, backend, problem = opro(budget=Budget(max_steps=8, stop_when_solved=False))
    result = opt.run()
    assert result.stop_reason is StopReason.MAX_STEPS and result.steps == 8
    trials = result.history.trials
    assert len(backend.requests) == result.usage.calls == sum(1 for t in trials if t.source.startswith("llm:"))
    assert len(problem.scored) == len(set(problem.scored)) == result.counts["COMPLETE"]  # never re-scored
    invalid = [t for t in trials if t.state is TrialState.INVALID]
    dups = [t for t in trials if t.state is TrialState.DUPLICATE]
    assert invalid and all(t.raw and t.error.startswith("ParseError") and t.value is None for t in invalid)
    assert dups and all(t.value is None and opt.history.get(t.duplicate_of).key == t.key for t in dups)
    # invalid replies never reach a later meta-prompt
    prompts = [r["messages"][-1]["content"] for r in backend.requests]
    assert not any(t.raw in p for t in invalid for p in prompts)


def test_each_step_draws_until_it_has_its_proposals_within_bounded_rounds() -> None:
    opt, backend, _ = opro(budget=Budget(max_steps=3, stop_when_solved=False), max_rounds=3)
    opt.run()
    for step in (1, 2, 3):
        trials = [t for t in opt.history if t.step == step]
        valid = sum(t.ok for t in trials)
        assert valid <= 8 and len(trials) <= 8 * 3
        assert valid == 8 or len(trials) > 8  # short only if it drew again


def test_garbage_replies_are_bounded_and_never_crash() -> None:
    opt, backend, problem = opro(script=lambda prompt, seed: "no idea, sorry" * (seed % 3),
                                 budget=Budget(max_steps=4), max_rounds=2)
    result = opt.run()
    assert result.stop_reason is StopReason.MAX_STEPS
    assert len(backend.requests) == 4 * 8 * 2  # two rounds of eight, every step, then give up
    assert result.counts["INVALID"] == 64 and result.counts["COMPLETE"] == len(problem.scored) == 5  # starts only


def test_stop_when_the_exact_pair_is_proposed() -> None:
    opt, _, _ = opro(script=lambda prompt, seed: "[15, 14]", budget=Budget(max_steps=50))
    result = opt.run()
    assert result.stop_reason is StopReason.SOLVED and result.solved_step == 1 == result.steps
    assert result.metrics["exact_pair_step"] == 1


@pytest.mark.parametrize("budget, reason", [
    (Budget(max_steps=2), StopReason.MAX_STEPS),
    (Budget(max_evals=12, stop_when_solved=False), StopReason.MAX_EVALS),
    (Budget(max_calls=13, stop_when_solved=False), StopReason.MAX_CALLS),
    (Budget(max_tokens=2000, stop_when_solved=False), StopReason.MAX_TOKENS),
    (Budget(max_usd=0.05, stop_when_solved=False), StopReason.MAX_USD),
    (Budget(max_seconds=0.0), StopReason.MAX_SECONDS),
    (Budget(max_steps=30, target=30000.0, stop_when_solved=False), StopReason.TARGET),
    (Budget(max_steps=200, patience=2, stop_when_solved=False), StopReason.PATIENCE),
])
def test_every_budget_stops_the_run_and_says_so(budget: Budget, reason: StopReason) -> None:
    llm, _ = scripted_llm(cost_per_call=0.01)
    opt = Optimizer(LinearRegression(seed=0), LLMProposer(llm), budget=budget)
    result = opt.run()
    assert result.stop_reason is reason, result.stop_detail
    u = result.usage
    if budget.max_evals is not None:
        assert result.evaluations == budget.max_evals  # exact: rounds never draw past it
    if budget.max_calls is not None:
        assert u.calls == budget.max_calls  # exact
    if budget.max_tokens is not None:
        assert budget.max_tokens <= u.tokens < budget.max_tokens + 8 * 1000  # at most one round over
    if budget.max_usd is not None:
        assert budget.max_usd <= u.cost_usd <= budget.max_usd + 8 * 0.01 + 1e-9


def test_llm_failure_stops_with_the_error() -> None:
    llm, backend = scripted_llm(fail=lambda request: ConnectionError("connection refused"))
    result = Optimizer(LinearRegression(), LLMProposer(llm), budget=Budget(max_steps=10)).run()
    assert result.stop_reason is StopReason.LLM_FAILURE and "connection refused" in result.stop_detail
    assert len(backend.requests) == 8 and result.counts["FAILED"] == 8


def test_some_failed_calls_are_recorded_and_the_run_goes_on() -> None:
    llm, _ = scripted_llm(fail=lambda r: TimeoutError("slow") if r["seed"] % 4 == 0 else None)
    result = Optimizer(LinearRegression(), LLMProposer(llm), budget=Budget(max_steps=3, stop_when_solved=False)).run()
    assert result.stop_reason is StopReason.MAX_STEPS
    failed = [t for t in result.history if t.state is TrialState.FAILED]
    assert failed and all("slow" in t.error for t in failed)


def test_scoring_errors_are_failed_trials() -> None:
    class Fragile(LinearRegression):
        def score(self, solution):
            if solution[0] % 2:
                raise ArithmeticError("odd w")
            return super().score(solution)

    result = Optimizer(Fragile(), RandomProposer(), budget=Budget(max_steps=3)).run()
    failed = [t for t in result.history if t.state is TrialState.FAILED]
    assert failed and all("odd w" in t.error and t.solution[0] % 2 for t in failed)


def test_an_unbounded_budget_is_refused() -> None:
    with pytest.raises(ValueError, match="no limit"):
        Budget(max_steps=None)
    with pytest.raises(ValueError, match="max_calls"):
        Budget(max_calls=-1)


def test_ask_tell_suggest() -> None:
    opt = Optimizer(LinearRegression(), RandomProposer(), budget=Budget(max_steps=5))
    baseline = opt.suggest((3, 4))
    assert baseline.ok and baseline.source == "user"
    again = opt.suggest((3, 4))
    assert again.state is TrialState.DUPLICATE and again.duplicate_of == baseline.number
    candidates = opt.ask(4)
    assert len(candidates) == 4 and len({c.key for c in candidates}) == 4
    with pytest.raises(RuntimeError, match="pending"):
        opt.ask(4)
    for c in candidates[:-1]:
        opt.tell(c, 1000.0 + c.number)
    opt.tell(candidates[-1], error="simulator crashed")
    with pytest.raises(ValueError, match="not pending"):
        opt.tell(candidates[0], 1.0)
    assert opt.history.get(candidates[-1].number).state is TrialState.FAILED
    assert len(opt.ask(2)) == 2


def test_parallel_evaluation_gives_the_same_run() -> None:
    def run(executor):
        return Optimizer(LinearRegression(), RandomProposer(), seed=3, budget=Budget(max_steps=6)).run(executor=executor)

    with ThreadPoolExecutor(4) as pool:
        parallel = run(pool)
    sequential = run(None)
    assert [(t.number, t.key, t.value) for t in parallel.history] == [(t.number, t.key, t.value) for t in sequential.history]


def test_store_holds_every_trial_prompt_and_call(tmp_path) -> None:
    store = RunStore(tmp_path / "runs.db")
    opt, backend, _ = opro(budget=Budget(max_steps=3, stop_when_solved=False), store=store, name="a")
    result = opt.run()
    run = store.get_run("a")
    assert run.status == "finished" and run.stop_reason == "max_steps"
    assert len(store.trials(run.id)) == len(result.history)
    assert len(store.calls(run.id)) == len(backend.requests) == result.usage.calls
    steps = store.steps(run.id)
    assert [s.step for s in steps] == [0, 1, 2, 3] and all(s.finished for s in steps)
    assert steps[0].prompt is None and all(s.prompt.startswith("Now you will help me") for s in steps[1:])
    assert run.config["proposer"]["llm"]["model"] == "fake/scripted" and run.config["seed"] == 0
    assert run.versions["numpy"] and run.versions["python"]
    raw = {t.number: t.raw for t in store.trials(run.id)}
    assert all(raw[t.number] == t.raw for t in result.history)


def test_a_proposals_origin_is_recorded_with_its_trial_and_shown(tmp_path, capsys) -> None:
    """Where in a population a proposal was made (a proposer's ``origin``) is stored with its trial, read
    back by a resumed run, and printed by `llmopt show --step`; a proposer without one records none."""
    import dataclasses

    from llmopt.cli import main

    class Tagged(RandomProposer):
        def propose(self, problem, prompt, numbers, seed, on_call=None):
            return [dataclasses.replace(p, origin={"island": p.number % 3, "cell": [1, 2]})
                    for p in super().propose(problem, prompt, numbers, seed, on_call)]

    with RunStore(tmp_path / "r.db") as store:
        opt = Optimizer(LinearRegression(seed=0), Tagged(), store=store, name="tagged", proposals_per_step=4,
                        budget=Budget(max_steps=1, stop_when_solved=False))
        opt.run()
        told = {t.number: t.origin for t in opt.history}
        stored = {t.number: t.origin for t in store.trials(store.get_run("tagged").id)}
    proposed = {n: o for n, o in told.items() if o is not None}
    assert len(proposed) == 4 and all(o == {"island": n % 3, "cell": [1, 2]} for n, o in proposed.items())
    assert stored == told  # starts have none
    assert main(["show", "tagged", "--store", str(tmp_path / "r.db"), "--step", "1"]) == 0
    out = capsys.readouterr().out
    assert f"from cell (1, 2), island {min(proposed) % 3} (random)" in out  # names in order
