"""The sandbox's interface (issue 27): Limits, Outcome, check_evaluator, isolation(), Candidate.run/load,
and evaluations from several threads at once. The hostile candidates are tests/test_hostile_candidates.py.
"""
from __future__ import annotations

import os
import pickle
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from llmopt.programs._hostile import CASES
from llmopt.programs.isolation import isolation
from llmopt.programs.sandbox import Limits, Outcome, check_evaluator, evaluate_in_sandbox

FAST = Limits(wall_s=5, cpu_s=5, memory_mb=512, file_mb=4, processes=16, output_kb=16)


def _evaluator(tmp_path: Path, body: str, name: str = "evaluator.py") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return f"{path}:evaluate"


def test_a_program_is_scored_with_its_feedback_and_metrics(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        def evaluate(candidate, n=3):
            value = candidate.run("solve", n)
            print("checked", n)
            return {"score": value, "feedback": f"solve({n}) = {value}", "metrics": {"n": n, "ok": True}}
    """)
    outcome = evaluate_in_sandbox("def solve(n):\n    return n * 2\n", spec, limits=FAST, kwargs={"n": 4})
    assert (outcome.ok, outcome.value, outcome.feedback) == (True, 8.0, "solve(4) = 8")
    assert outcome.metrics == {"n": 4, "ok": True} and outcome.reason is None
    assert outcome.stdout == "checked 4\n" and outcome.wall_s > 0


def test_the_evaluators_exception_is_one_line_with_its_line(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        def evaluate(candidate):
            return 1 / 0
    """)
    outcome = evaluate_in_sandbox("x = 1\n", spec, limits=FAST)
    assert not outcome.ok
    assert outcome.reason == "evaluator raised ZeroDivisionError (evaluator.py line 3): division by zero"
    assert outcome.feedback == outcome.reason


def test_the_candidates_exception_names_its_type_message_and_line(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        def evaluate(candidate):
            return candidate.run("solve")
    """)
    source = "def helper():\n    return {}['missing']\n\ndef solve():\n    return helper()\n"
    outcome = evaluate_in_sandbox(source, spec, limits=FAST)
    assert outcome.reason == "KeyError (candidate.py line 2): 'missing'"


def test_run_converts_numpy_and_times_out_per_call(tmp_path: Path) -> None:
    pytest.importorskip("numpy")
    spec = _evaluator(tmp_path, """
        from llmopt.programs.candidate import CandidateError
        def evaluate(candidate):
            import numpy as np
            total = candidate.run("total", np.arange(4))
            metrics = {"mean": np.float64(1.5), "size": np.int64(4), "array": np.zeros(2)}
            try:
                candidate.run("spin", timeout=0.5)
            except CandidateError as exc:
                return {"score": total, "feedback": str(exc), "metrics": metrics}
    """)
    source = "import numpy as np\ndef total(xs):\n    return np.float64(np.sum(xs))\n" \
             "def spin():\n    while True:\n        pass\n"
    outcome = evaluate_in_sandbox(source, spec, limits=FAST)
    assert outcome.ok and outcome.value == 6.0, outcome
    assert outcome.feedback == "spin() timed out after 0.5 s (killed)"
    assert outcome.metrics == {"mean": 1.5, "size": 4}  # numpy scalars kept as numbers, an array dropped


def test_load_imports_the_candidate_into_the_evaluator(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        def evaluate(candidate):
            module = candidate.load()
            return {"score": module.VALUE, "feedback": candidate.source.splitlines()[0]}
    """)
    outcome = evaluate_in_sandbox("VALUE = 2.5\n", spec, limits=FAST)
    assert (outcome.ok, outcome.value, outcome.feedback) == (True, 2.5, "VALUE = 2.5")


def test_a_module_spec_is_imported_from_the_parents_path() -> None:
    outcome = evaluate_in_sandbox("def solve():\n    return 3\n", "llmopt.programs._hostile:evaluate",
                                  limits=FAST)
    assert outcome.ok and outcome.value == 3.0, outcome


def test_check_evaluator_says_in_one_line_what_is_wrong(tmp_path: Path) -> None:
    good = _evaluator(tmp_path, "def evaluate(candidate):\n    return 1.0\n")
    check_evaluator(good)
    check_evaluator("llmopt.programs._hostile:evaluate")
    for spec, words in [("no-colon", "expected 'pkg.mod:function'"),
                        (f"{tmp_path}/missing.py:evaluate", "no file"),
                        (good.replace(":evaluate", ":score"), "defines no 'score'"),
                        ("no_such_module_here:evaluate", "no module named"),
                        ("llmopt.programs._hostile:1bad", "is not a function name")]:
        with pytest.raises(ValueError, match=words) as info:
            check_evaluator(spec)
        assert "\n" not in str(info.value)


def test_limits_are_bounded_and_recorded() -> None:
    assert Limits().to_dict()["wall_s"] == 20.0
    with pytest.raises(ValueError, match=r"Limits.wall_s must be a number in \[0.1, 86400\]"):
        Limits(wall_s=0)
    with pytest.raises(ValueError, match="Limits.processes"):
        Limits(processes=True)  # type: ignore[arg-type]


def test_arguments_and_results_pickle_for_process_and_dask_executors(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, "def evaluate(candidate):\n    return 1.0\n")
    outcome = evaluate_in_sandbox("", spec, limits=FAST)
    assert pickle.loads(pickle.dumps(outcome)) == outcome
    assert pickle.loads(pickle.dumps(FAST)) == FAST
    assert isinstance(pickle.loads(pickle.dumps(evaluate_in_sandbox)), type(evaluate_in_sandbox))


def test_kwargs_must_be_json(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, "def evaluate(candidate):\n    return 1.0\n")
    with pytest.raises(ValueError, match="kwargs must be JSON"):
        evaluate_in_sandbox("", spec, kwargs={"x": object()})


def test_isolation_describes_this_machine_in_one_line() -> None:
    line = isolation().describe()
    assert line.startswith("sandbox: ") and "\n" not in line
    assert isolation() is isolation()
    if os.geteuid() == 0 and isolation().namespaces:
        assert "net+pid+mount" in line and "lacks" not in line


@pytest.mark.slow  # seconds: the hostile one runs until its wall time
def test_two_evaluations_at_once_one_hostile_the_other_scored(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        def evaluate(candidate):
            return candidate.run("solve")
    """)
    hostile = CASES["fork loop" if isolation().separate_uids else "infinite loop"]
    limits = Limits(wall_s=2.5, cpu_s=3, memory_mb=512, processes=16)
    with ThreadPoolExecutor(2) as pool:
        bad = pool.submit(evaluate_in_sandbox, hostile.source, hostile.spec(), limits=limits)
        good = [pool.submit(evaluate_in_sandbox, f"def solve():\n    return {i}\n", spec,
                            limits=Limits(wall_s=15))  # a fair wall: 16 forks spin on the same 2 cores
                for i in range(3)]
        outcomes: list[Outcome] = [f.result() for f in good]
    assert [o.value for o in outcomes] == [0.0, 1.0, 2.0], outcomes
    assert not bad.result().ok and "timed out" in (bad.result().reason or "")


def test_the_fallback_without_namespaces_or_uids_still_scores_and_kills(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmopt.programs import sandbox
    from llmopt.programs.isolation import Isolation

    bare = Isolation(prefix=(), namespaces=(), separate_uids=False)
    monkeypatch.setattr(sandbox, "isolation", lambda: bare)
    assert "lacks: network open" in bare.describe()
    spec = _evaluator(tmp_path, "def evaluate(candidate):\n    return candidate.run('solve')\n")
    outcome = evaluate_in_sandbox("def solve():\n    return 7\n", spec, limits=FAST)
    assert outcome.ok and outcome.value == 7.0, outcome
    loop = CASES["infinite loop in the evaluator"]
    outcome = evaluate_in_sandbox(loop.source, loop.spec(), limits=Limits(wall_s=1))
    assert outcome.reason == "timed out after 1 s (process group killed)"


def test_feedback_is_cut_at_its_limit_and_a_long_result_line_does_not_block(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        def evaluate(candidate):
            return {"score": 1, "feedback": "\\u00e9" * 50000, "metrics": {str(i): i for i in range(100)}}
    """)
    outcome = evaluate_in_sandbox("", spec, limits=Limits(wall_s=5, feedback_chars=20000))
    assert outcome.ok and outcome.feedback == "\u00e9" * 20000  # 120 kB of JSON: more than a pipe's 64 kB
    assert len(outcome.metrics) == 32


def test_without_pidfds_the_waits_poll(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmopt.programs import _runner

    monkeypatch.setattr(_runner, "_pidfd", lambda pid: None)  # the optimizer's side (the sandbox's has its own)
    spec = _evaluator(tmp_path, "def evaluate(candidate):\n    return candidate.run('solve')\n")
    assert evaluate_in_sandbox("def solve():\n    return 5\n", spec, limits=FAST).value == 5.0
    loop = CASES["infinite loop in the evaluator"]
    assert "timed out" in (evaluate_in_sandbox(loop.source, loop.spec(), limits=Limits(wall_s=1)).reason or "")


def test_an_evaluator_may_run_candidate_calls_from_threads(tmp_path: Path) -> None:
    spec = _evaluator(tmp_path, """
        from concurrent.futures import ThreadPoolExecutor
        def evaluate(candidate):
            with ThreadPoolExecutor(3) as pool:
                values = list(pool.map(lambda n: candidate.run("square", n), range(6)))
            return {"score": sum(values), "feedback": repr(values)}
    """)
    outcome = evaluate_in_sandbox("def square(n):\n    return n * n\n", spec, limits=FAST)
    assert outcome.ok and outcome.feedback == "[0, 1, 4, 9, 16, 25]", outcome


@pytest.mark.parametrize(("source", "function", "reason"), [
    ("def solve(:\n    pass\n", "evaluate", "SyntaxError (candidate.py line 1): invalid syntax"),
    ("x = 1\n", "evaluate", "AttributeError: the candidate defines no function 'solve'"),
    ("def solve():\n    return 1\n", "nope",
     "evaluator raised AttributeError: the evaluator module defines no function 'nope'"),
])
def test_broken_candidates_and_evaluators_say_what_is_wrong_in_one_line(source: str, function: str,
                                                                       reason: str) -> None:
    from llmopt.programs._hostile import EVALUATORS

    assert evaluate_in_sandbox(source, f"{EVALUATORS}:{function}", limits=FAST).reason == reason
