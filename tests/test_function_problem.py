"""FunctionProblem: a user's objective over a JSON schema's values, and llmopt.minimize / maximize."""

from __future__ import annotations

import json
import math
import re

import jsonschema
import numpy as np
import pytest

import llmopt
from llmopt import Budget, FunctionProblem, Optimizer, ParseError, RandomProposer, RunStore, TrialState
from llmopt.seeding import stream

SPACE = {"type": "object",
         "properties": {"x": {"type": "integer", "minimum": -10, "maximum": 10},
                        "y": {"type": "number", "minimum": -1, "maximum": 1},
                        "mode": {"enum": ["fast", "slow"]}, "on": {"type": "boolean"},
                        "v": {"type": "array", "items": {"type": "number", "minimum": 0, "maximum": 1},
                              "minItems": 2, "maxItems": 2}},
         "required": ["x", "y", "mode", "on", "v"], "additionalProperties": False}


def bowl(s: dict) -> float:
    return (s["x"] - 3) ** 2 + s["y"] ** 2 + (s["mode"] == "slow") + s["on"] + sum(s["v"])


def problem(**kwargs) -> FunctionProblem:
    return FunctionProblem(bowl, SPACE, description="Minimize a bowl.", **kwargs)


def test_draws_fit_the_schema_and_come_from_the_given_generator_only() -> None:
    p = problem()
    draws = [p.random_solution(stream(3, "r", i)) for i in range(200)]
    for d in draws:
        jsonschema.validate(d, SPACE)
    assert draws == [p.random_solution(stream(3, "r", i)) for i in range(200)]
    assert len({p.key(d) for d in draws}) == 200  # continuous coordinates: all distinct
    assert {d["mode"] for d in draws} == {"fast", "slow"} and {d["on"] for d in draws} == {False, True}
    assert {d["x"] for d in draws} <= set(range(-10, 11)) and len({d["x"] for d in draws}) > 15
    starts = p.initial_solutions(stream(0, "start"))
    assert len(starts) == 5 and starts == p.initial_solutions(stream(0, "start"))


@pytest.mark.parametrize("reply", [
    '{"x": 3, "y": 0.5, "mode": "fast", "on": false, "v": [0.1, 0.2]}',
    'Let me think. ```json\n{"x": 3, "y": 0.5, "mode": "fast", "on": false, "v": [0.1, 0.2]}\n``` done',
    'first {"x": 1, "y": 0, "mode": "slow", "on": true, "v": [0, 0]} then {"x": 3, "y": 0.5, "mode": "fast", '
    '"on": false, "v": [0.1, 0.2]}',
    '{"answer": {"x": 3.0, "y": 0.5, "mode": "fast", "on": false, "v": [0.1, 0.2]}}',
])
def test_decode_takes_the_last_json_the_schema_admits(reply: str) -> None:
    p = problem()
    assert p.decode(reply) == {"x": 3, "y": 0.5, "mode": "fast", "on": False, "v": [0.1, 0.2]}


@pytest.mark.parametrize("reply, says", [
    ('{"other": 1}', "'x' is a required property"),
    ('{"x": 30, "y": 0, "mode": "fast", "on": false, "v": [0, 0]}', "at /x: 30 is greater than the maximum of 10"),
    ('{"x": "3", "y": 0, "mode": "fast", "on": false, "v": [0, 0]}', "at /x"),
    ('{"x": 3, "y": NaN, "mode": "fast", "on": false, "v": [0, 0]}', "no JSON value"),
    ('{"x": 3, "y": 1e400, "mode": "fast", "on": false, "v": [0, 0]}', "not a finite number"),
    ('{"x": 3, "y": 0, "mode": "medium", "on": false, "v": [0, 0]}', "at /mode"),
    ('{"x": 3, "y": 0, "mode": "fast", "on": false, "v": [0, 0', "no JSON value"),
    ("I do not know.", "no JSON value"),
    ("[" * 10_000, "no JSON value"),
    ('{"x": ' * 5_000, "no JSON value"),
    ("", "no JSON value"),
])
def test_a_reply_with_no_admissible_json_is_a_parse_error_naming_the_path(reply: str, says: str) -> None:
    with pytest.raises(ParseError, match=None) as caught:
        problem().decode(reply)
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_canonical_encoding_round_trips_and_merges_equal_numbers() -> None:
    p = problem()
    s = {"y": -0.25, "x": 2.0, "mode": "slow", "on": True, "v": [1.0, 0.5]}
    text = p.encode(s)
    assert text == '{"mode": "slow", "on": true, "v": [1, 0.5], "x": 2, "y": -0.25}'
    assert p.encode(p.decode(text)) == text and p.key(p.decode(text)) == p.key(s)
    assert p.key({**s, "x": 2}) == p.key(s)  # 2 and 2.0 are one solution
    assert p.from_json(p.to_json(s)) == p.decode(text)
    with pytest.raises(ParseError, match="at /x"):
        p.from_json({**s, "x": 11})


@pytest.mark.parametrize("schema, says", [
    ({"type": "number"}, "the schema at / is an unbounded number"),
    ({"type": "object", "properties": {"name": {"type": "string"}}}, "the schema at /name is a free string"),
    ({"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 3}}, "an array of varying length"),
    ({"type": "integer", "minimum": 5, "maximum": 1}, "admits no value"),
    ({"type": "integer", "minimum": "low"}, "invalid JSON schema at /minimum"),
    ([1, 2], "a JSON schema must be an object"),
])
def test_a_schema_that_cannot_be_drawn_from_is_one_clear_line(schema, says: str) -> None:
    with pytest.raises(ValueError) as caught:
        FunctionProblem(bowl, schema, description="d")
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_an_unbounded_schema_works_with_its_own_random_solution() -> None:
    schema = {"type": "object", "properties": {"word": {"type": "string", "maxLength": 8}}, "required": ["word"]}
    words = ["apple", "pear", "fig", "plum"]
    p = FunctionProblem(lambda s: len(s["word"]), schema, description="Find a short word.",
                        random_solution=lambda rng: {"word": words[int(rng.integers(len(words)))]})
    assert p.random_solution(stream(0, "r")) in [{"word": w} for w in words]
    assert p.decode('{"word": "kiwi"}') == {"word": "kiwi"}
    assert p.search_space() is None  # no optuna for free strings
    bad = FunctionProblem(len, schema, description="d", random_solution=lambda rng: {"word": 3})
    with pytest.raises(ValueError, match=r"random_solution\(rng\) does not fit the schema: at /word"):
        bad.random_solution(stream(0, "r"))


def test_bad_arguments_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="description"):
        FunctionProblem(bowl, SPACE, description="  ")
    with pytest.raises(ValueError, match="direction"):
        FunctionProblem(bowl, SPACE, description="d", direction="down")
    with pytest.raises(ValueError, match="objective must be a function"):
        FunctionProblem(3, SPACE, description="d")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"initial\[1\] does not fit the schema: at /"):
        problem(initial=[{"x": 0, "y": 0, "mode": "fast", "on": False, "v": [0, 0]}, {"x": 0}])


def test_config_names_the_objective_and_survives_json() -> None:
    p = problem(optimum=0.0)
    config = p.config()
    assert json.loads(json.dumps(config)) == config
    assert config["objective"] == f"{__name__}:bowl" and config["schema"] == SPACE and p.optimum == 0.0


def test_a_function_problem_runs_on_the_loop_with_random_search(tmp_path) -> None:
    p = problem()
    with RunStore(str(tmp_path / "runs.db")) as store:
        result = Optimizer(p, RandomProposer(), seed=1, budget=Budget(max_steps=10), store=store, name="r").run()
        assert result.steps == 10 and result.counts[TrialState.COMPLETE.value] > 60
        assert math.isfinite(result.best.value) and result.best.value < min(bowl(s) for s in
                                                                           p.initial_solutions(stream(1, "start")))
        stored = store.trials(store.get_run("r").id)
        assert all(jsonschema.Draft202012Validator(SPACE).is_valid(json.loads(t.text)) for t in stored if t.ok)


def test_maximize_is_direction_aware() -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 100}},
              "required": ["x"]}
    result = llmopt.maximize(lambda s: -abs(s["x"] - 70), schema, proposer="random", steps=20, seed=0)
    assert result.best.value > -10 and result.history.direction.value == "maximize"


def test_minimize_rejects_an_unknown_proposer_and_mixed_budgets() -> None:
    with pytest.raises(ValueError, match="proposer must be"):
        llmopt.minimize(bowl, SPACE, proposer="annealing")
    with pytest.raises(ValueError, match="either budget="):
        llmopt.minimize(bowl, SPACE, proposer="random", budget=Budget(max_steps=3), steps=4)


def test_random_draws_do_not_touch_global_state() -> None:
    p = problem()
    np.random.seed(1)
    a = p.random_solution(stream(5, "r"))
    np.random.seed(2)
    np.random.random(10)
    assert p.random_solution(stream(5, "r")) == a


# --- the command line: llmopt run function -----------------------------------------------------

OBJECTIVE = '''
def bowl(s):
    return (s["x"] - 3) ** 2 + (s["y"] + 1) ** 2
'''
CLI_SPACE = {"type": "object", "properties": {"x": {"type": "integer", "minimum": -20, "maximum": 20},
                                              "y": {"type": "integer", "minimum": -20, "maximum": 20}},
             "required": ["x", "y"], "additionalProperties": False}


def cli_files(tmp_path):
    (tmp_path / "user_objective.py").write_text(OBJECTIVE)
    (tmp_path / "space.json").write_text(json.dumps(CLI_SPACE))
    return str(tmp_path / "user_objective.py"), str(tmp_path / "space.json")


def test_llmopt_run_function_runs_resumes_and_records_the_objective(tmp_path, capsys) -> None:
    from llmopt.cli import main

    module, schema = cli_files(tmp_path)
    store = str(tmp_path / "runs.db")
    args = ["run", "function", "--objective", f"{module}:bowl", "--schema", schema, "--proposer", "random",
            "--store", store, "--quiet", "--description", "Minimize a bowl in x and y."]
    assert main([*args, "--steps", "3"]) == 0
    assert main([*args, "--steps", "6", "--resume", "--name", "function-random-seed0"]) == 0
    out = capsys.readouterr().out
    assert "function-random-seed0" in out and "steps       6" in out
    with RunStore(store, readonly=True) as s:
        run = s.get_run("function-random-seed0")
        assert run.config["problem"]["objective"] == "user_objective:bowl"
        assert run.config["problem"]["schema"] == CLI_SPACE
        assert max(t.step for t in s.trials(run.id)) == 6
    (tmp_path / "user_objective.py").write_text(OBJECTIVE + "\n\ndef other(s):\n    return s['x']\n")
    other = [a if a != f"{module}:bowl" else f"{module}:other" for a in args]
    assert main([*other, "--steps", "8", "--resume", "--name", "function-random-seed0"]) == 2
    assert "problem.objective: 'user_objective:bowl' -> 'user_objective:other'" in capsys.readouterr().err


@pytest.mark.parametrize("change, says", [
    ({"--objective": "{module}:nope"}, "has no nope"),
    ({"--objective": "no_such_module_xyz:f"}, "cannot import no_such_module_xyz: ModuleNotFoundError"),
    ({"--objective": "bowl"}, "expected package.module:function"),
    ({"--schema": "{tmp}/missing.json"}, "No such file"),
    ({"--schema": '{{"type": "number"}}'}, "the schema at / is an unbounded number"),
    ({"--schema": '{{"type": '}, "not JSON"),
])
def test_llmopt_run_function_refuses_bad_input_in_one_line(tmp_path, capsys, change, says) -> None:
    from llmopt.cli import main

    module, schema = cli_files(tmp_path)
    flags = {"--objective": f"{module}:bowl", "--schema": schema}
    flags.update({k: v.format(module=module, tmp=tmp_path) for k, v in change.items()})
    store = tmp_path / "runs.db"
    code = main(["run", "function", *[x for kv in flags.items() for x in kv], "--proposer", "random",
                 "--store", str(store), "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and err.count("\n") == 1, err
    assert not store.exists()  # refused before any store was made


# --- the shipped contract ------------------------------------------------------------------------

def test_a_function_problem_passes_the_shipped_contract_with_no_strategy_given() -> None:
    from llmopt.testing import check_problem

    check_problem(problem(), max_examples=150)
    words = FunctionProblem(lambda s: len(s["w"]), {"type": "object", "properties": {"w": {"type": "string"}},
                                                    "required": ["w"]},
                            description="Find a short word.", random_solution=lambda rng: {"w": "ab"[rng.integers(2)]})
    check_problem(words, max_examples=100)


def test_a_compare_grid_runs_a_function_problem_beside_optuna(tmp_path, monkeypatch, capsys) -> None:
    from llmopt.cli import main

    module, schema = cli_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "grid.toml").write_text(f'''
name = "fn"
store = "grid.db"
seeds = 2

[defaults]
steps = 3

[problems.function]
objective = "{module}:bowl"
schema = "space.json"
description = "Minimize a bowl in x and y."

[configs.random]
proposer = "random"

[configs.tpe]
proposer = "optuna:tpe"
''')
    assert main(["compare", "grid.toml"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^random +random in .* +2/2 ", out, re.M), out
    assert re.search(r"^tpe +optuna:tpe in .* +2/2 ", out, re.M), out
    with RunStore(str(tmp_path / "grid.db"), readonly=True) as s:
        assert len(s.runs()) == 4 and all(r.problem == "function" for r in s.runs())


def test_a_decimal_multiple_of_is_refused_and_a_binary_one_draws_valid_values() -> None:
    with pytest.raises(ValueError, match=r"the schema at /x is a multiple of 0.1.*0.3 is not a multiple of 0.1"):
        FunctionProblem(bowl, {"type": "object", "properties": {"x": {"type": "number", "minimum": 0, "maximum": 1,
                                                                     "multipleOf": 0.1}}}, description="d")
    schema = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0, "maximum": 3, "multipleOf": 0.25},
                                               "n": {"type": "integer", "minimum": 1, "maximum": 20, "multipleOf": 5}},
              "required": ["x", "n"]}
    p = FunctionProblem(lambda s: s["x"] + s["n"], schema, description="d")
    draws = [p.random_solution(stream(0, "r", i)) for i in range(100)]
    assert all(jsonschema.Draft202012Validator(schema).is_valid(d) for d in draws)
    assert {d["n"] for d in draws} == {5, 10, 15, 20} and len({d["x"] for d in draws}) == 13


# --- the scores a model reads (issue: "scores the model cannot read") ------------------------------

def _shown(values: list[float], config=None) -> list[str]:
    """The scores a function's meta-prompt shows for solutions with ``values``."""
    from llmopt import MetaPromptConfig, SolutionHistory, Trial, build_meta_prompt

    p = FunctionProblem(lambda s: s["x"], {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0,
                                                                                  "maximum": 99}},
                                           "required": ["x"]}, description="Minimize x.")
    h = SolutionHistory(p.direction)
    for i, v in enumerate(values):
        h.append(Trial(number=i, step=0, state=TrialState.COMPLETE, source="start", solution={"x": i},
                       text=p.encode({"x": i}), key=p.key({"x": i}), value=v))
    return re.findall(r"^value:\n(.*)$", build_meta_prompt(p, h, config or MetaPromptConfig()), re.M)


@pytest.mark.parametrize("values, shown", [
    ([2.50, 1.569], ["2.500", "1.569"]),  # the paper's integers showed both as 2
    ([6.46, 5.71, 4.92], ["6.46", "5.71", "4.92"]),  # were 6, 6, 5
    ([103.2, 1.5694, 1.5691], ["103.2000", "1.5694", "1.5691"]),  # the spread's digits, then more to tell apart
    ([12_345_678.0, 12_345_600.0], ["12345678.0", "12345600.0"]),  # a spread of 78 to 3 digits
    ([0.5, 0.5], ["0.500", "0.500"]),
])
def test_a_functions_scores_keep_their_information_in_the_meta_prompt(values, shown) -> None:
    assert _shown(values) == shown


def test_the_score_display_is_a_setting_and_the_papers_problems_keep_integers() -> None:
    from llmopt import MetaPromptConfig
    from problems.linear_regression.problem import LinearRegression

    assert _shown([2.5, 1.569], MetaPromptConfig(scores="rounded")) == ["2", "2"]
    assert _shown([2.5, 1.569], MetaPromptConfig(scores="significant", digits=2)) == ["2.50", "1.57"]
    assert MetaPromptConfig().for_problem(LinearRegression()).scores == "rounded"
    with pytest.raises(ValueError, match="digits must be in 1..12"):
        MetaPromptConfig(scores="significant", digits=0)


def test_a_run_records_its_score_display_and_an_older_run_resumes_with_its_own(tmp_path, capsys) -> None:
    from llmopt.cli import main
    from llmopt.testing import ScriptedLLM

    llm = ScriptedLLM(lambda prompt, seed: json.dumps({"x": seed % 7, "y": 0.25, "mode": "fast", "on": False,
                                                       "v": [0.5, 0.5]}))
    store = str(tmp_path / "runs.db")
    result = llmopt.minimize(bowl, SPACE, model=llm, steps=1, store=store, progress=False)
    with RunStore(store, readonly=True) as s:
        shown = s.get_run(result.name).config["proposer"]["metaprompt"]
        assert (shown["scores"], shown["digits"]) == ("significant", 3)
    # a run recorded with the paper's integers (as every function run before) resumes with them, unasked
    module, schema = cli_files(tmp_path)
    args = ["run", "function", "--objective", f"{module}:bowl", "--schema", schema, "--store", store, "--quiet",
            "--name", "old", "--structured", "off", "--model", "openai/none", "--api-base", "http://127.0.0.1:9"]
    assert main([*args, "--steps", "0", "--scores", "rounded"]) == 0
    assert main([*args, "--steps", "0", "--resume"]) == 0, capsys.readouterr().err
    with RunStore(store, readonly=True) as s:
        assert s.get_run("old").config["proposer"]["metaprompt"]["scores"] == "rounded"


# --- failures you can see ---------------------------------------------------------------------------

BROKEN = '''
import math

def raises(s):
    raise ValueError(f"no model for x={s['x']}")

def nan(s):
    return math.nan

def half(s):
    if s["x"] % 2:
        raise KeyError("odd")
    return s["x"]
'''


@pytest.mark.parametrize("function, says", [("raises", "score raised ValueError: no model for x="),
                                            ("nan", "score is nan, not a finite number")])
def test_a_run_whose_every_evaluation_failed_says_why_and_exits_non_zero(tmp_path, capsys, function, says) -> None:
    from llmopt.cli import main

    _, schema = cli_files(tmp_path)
    (tmp_path / "broken.py").write_text(BROKEN)
    code = main(["run", "function", "--objective", f"{tmp_path / 'broken.py'}:{function}", "--schema", schema,
                 "--proposer", "random", "--steps", "2", "--store", str(tmp_path / "runs.db"), "--quiet"])
    out, err = capsys.readouterr()
    assert code == 1
    row = next(line for line in out.splitlines() if line.startswith("most common failure"))
    assert "21 of 21: " in row and says in row and "(e.g. trial #0: {" in row, out
    assert err.strip().startswith("llmopt: error: run function-random-seed0: every evaluation failed (21)") and \
        says in err and err.strip().count("\n") == 0, err


def test_a_run_with_some_failures_names_the_most_common_and_exits_zero(tmp_path, capsys) -> None:
    from llmopt.cli import main

    _, schema = cli_files(tmp_path)
    (tmp_path / "broken.py").write_text(BROKEN)
    assert main(["run", "function", "--objective", f"{tmp_path / 'broken.py'}:half", "--schema", schema,
                 "--proposer", "random", "--steps", "2", "--store", str(tmp_path / "runs.db"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^most common failure +\d+ of \d+: score raised KeyError: 'odd'  \(e\.g\. trial #\d+: ", out, re.M)


@pytest.mark.parametrize("value, kind", [("1.5", "str '1.5'"), (True, "bool True"), (None, "NoneType None"),
                                         ([1.0, 2.0], "list [1.0, 2.0]"), (np.array([1.0, 2.0]), "ndarray")])
def test_an_objective_must_return_a_real_number(value, kind) -> None:
    result = llmopt.minimize(lambda s: value, SPACE, proposer="random", steps=1, progress=False)
    assert result.best is None and result.counts["FAILED"] == 13
    assert all(t.error.startswith(f"score raised TypeError: the objective returned {kind}") and
               "not a real number" in t.error for t in result.history), result.history[0].error


@pytest.mark.parametrize("value", [np.float32(1.5), np.int64(2), 3, np.array(2.5)])
def test_numpy_and_python_numbers_are_real_numbers(value) -> None:
    result = llmopt.minimize(lambda s: value, SPACE, proposer="random", steps=1, progress=False)
    assert result.counts["FAILED"] == 0 and result.best.value == float(value)


def test_check_problem_names_the_input_when_the_objective_raises() -> None:
    from llmopt.testing import ContractViolation, check_problem

    def fragile(s: dict) -> float:
        return 1.0 / (s["x"] - s["x"])

    with pytest.raises(ContractViolation, match=r"^scores are finite: score\(\{'x': -?\d+, 'y': .*\}\) raised "
                                                r"ZeroDivisionError: float division by zero$"):
        check_problem(FunctionProblem(fragile, SPACE, description="Fragile."), max_examples=10)


# --- a resume notices a changed objective -----------------------------------------------------------

def test_a_resume_after_the_objective_changed_is_refused_in_one_line_unless_accepted(tmp_path, capsys) -> None:
    from llmopt.cli import main

    module, schema = cli_files(tmp_path)
    store = str(tmp_path / "runs.db")
    args = ["run", "function", "--objective", f"{module}:bowl", "--schema", schema, "--proposer", "random",
            "--store", store, "--quiet", "--name", "r"]
    assert main([*args, "--steps", "2"]) == 0
    with RunStore(store, readonly=True) as s:
        before = s.get_run("r").config["problem"]["fingerprint"]
    source = tmp_path / "user_objective.py"
    source.write_text("# a comment, and a function the objective does not call\n" + OBJECTIVE + "\ndef g(): pass\n")
    assert main([*args, "--steps", "3", "--resume"]) == 0  # what bowl computes did not change
    source.write_text(OBJECTIVE.replace("** 2 + (s", "** 2 + 100 + (s"))
    capsys.readouterr()
    assert main([*args, "--steps", "4", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "its objective user_objective:bowl changed since the run began (fingerprint " \
        f"{before} -> " in err and "--accept-changed-objective" in err, err
    assert main([*args, "--steps", "4", "--resume", "--accept-changed-objective"]) == 0
    with RunStore(store, readonly=True) as s:
        values = [t.value for t in s.trials(s.get_run("r").id) if t.step == 4]
        assert values and min(values) >= 100  # the changed function's values, knowingly mixed in


def test_a_helper_the_objective_calls_and_a_constant_it_reads_are_part_of_it(tmp_path) -> None:
    from llmopt.function_problem import fingerprint

    def load(text: str):
        path = tmp_path / f"fp_mod_{len(list(tmp_path.iterdir()))}.py"  # a file per version: no stale linecache
        path.write_text(text)
        namespace: dict = {"__name__": "fp_mod"}
        exec(compile(text, str(path), "exec"), namespace)
        return namespace["f"]

    base = "SHIFT = 3\n\ndef helper(x):\n    return x * 2\n\ndef f(s):\n    return helper(s['x']) - SHIFT\n"
    first = fingerprint(load(base))
    assert first is not None and fingerprint(load(base + "\ndef unrelated():\n    return 1\n")) == first
    assert fingerprint(load(base.replace("x * 2", "x * 3"))) != first
    assert fingerprint(load(base.replace("SHIFT = 3", "SHIFT = 4"))) != first
    assert fingerprint(len) is None  # a builtin has no source: not checked


def test_a_lambda_is_fingerprinted_by_its_own_code_not_its_line(tmp_path) -> None:
    store = str(tmp_path / "runs.db")
    space = {"type": "object", "properties": {"x": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["x"]}
    llmopt.minimize(lambda s: s["x"] ** 2, space, proposer="random", steps=1, store=store, name="l", progress=False)
    llmopt.minimize(lambda s: s["x"] ** 2, space, proposer="random", steps=2, store=store, name="l", resume=True,
                    progress=False)
    with pytest.raises(llmopt.StoreError, match=r"its objective .*<lambda> changed since the run began"):
        llmopt.minimize(lambda s: s["x"] ** 3, space, proposer="random", steps=3, store=store, name="l",
                        resume=True, progress=False)
    result = llmopt.minimize(lambda s: s["x"] ** 3, space, proposer="random", steps=3, store=store, name="l",
                             resume=True, progress=False, accept_changed_objective=True)
    assert result.steps == 3


def test_a_run_recorded_without_a_fingerprint_still_resumes(tmp_path) -> None:
    import sqlite3

    store = str(tmp_path / "runs.db")
    llmopt.minimize(bowl, SPACE, proposer="random", steps=1, store=store, name="old", progress=False)
    with sqlite3.connect(store) as db:  # as an llmopt before fingerprints recorded it
        config = json.loads(db.execute("SELECT config FROM runs WHERE name = 'old'").fetchone()[0])
        del config["problem"]["fingerprint"]
        db.execute("UPDATE runs SET config = ? WHERE name = 'old'", (json.dumps(config),))
    result = llmopt.minimize(bowl, SPACE, proposer="random", steps=2, store=store, name="old", resume=True,
                             progress=False)
    assert result.steps == 2


# --- grid files read their paths from their own directory --------------------------------------------

def test_a_grid_file_reads_its_relative_paths_from_its_own_directory(tmp_path, monkeypatch, capsys) -> None:
    from llmopt.cli import main

    project = tmp_path / "myproj"
    project.mkdir()
    (project / "myobj_grid.py").write_text(OBJECTIVE.replace("def bowl", "def loss"))
    (project / "space.json").write_text(json.dumps(CLI_SPACE))
    (project / "grid.toml").write_text('store = "runs.db"\nseeds = 1\n[defaults]\nsteps = 1\nproposer = "random"\n'
                                       '[problems.fn]\nproblem = "function"\nobjective = "myobj_grid:loss"\n'
                                       'schema = "space.json"\n[configs.random]\n')
    monkeypatch.chdir(tmp_path)  # the parent directory, as a user types `llmopt compare myproj/grid.toml`
    assert main(["compare", "myproj/grid.toml", "--quiet"]) == 0, capsys.readouterr().err
    assert (project / "runs.db").exists() and not (tmp_path / "runs.db").exists()
    with RunStore(str(project / "runs.db"), readonly=True) as s:
        assert s.get_run("grid/fn/random/seed0").config["problem"]["objective"] == "myobj_grid:loss"


@pytest.mark.parametrize("key, value, says", [
    ("objective", "no_such_module_q:loss", "problems.fn.objective 'no_such_module_q:loss': cannot import "
                                           "no_such_module_q: ModuleNotFoundError"),
    ("schema", "missing.json", "problems.fn.schema missing.json: No such file"),
    ("steps", "-1", "defaults.steps: must be >= 0"),
])
def test_a_grid_files_errors_name_its_keys_not_flags(tmp_path, monkeypatch, capsys, key, value, says) -> None:
    from llmopt.cli import main

    (tmp_path / "space.json").write_text(json.dumps(CLI_SPACE))
    (tmp_path / "o.py").write_text(OBJECTIVE)
    options = {"objective": '"o.py:bowl"', "schema": '"space.json"'}
    defaults = "steps = 1\n"
    if key == "steps":
        defaults = f"steps = {value}\n"
    else:
        options[key] = f'"{value}"'
    (tmp_path / "grid.toml").write_text(f'seeds = 1\n[defaults]\n{defaults}proposer = "random"\n[problems.fn]\n'
                                        'problem = "function"\n' + "".join(f"{k} = {v}\n" for k, v in options.items())
                                        + "[configs.random]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "grid.toml", "--store", "g.db"]) == 2
    err = capsys.readouterr().err
    assert f"llmopt: error: grid.toml: {says}" in err and err.count("\n") == 1 and f"--{key}" not in err, err
    assert not (tmp_path / "g.db").exists()
