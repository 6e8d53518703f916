"""Hostile and broken input: fuzzed readers and loaders raise only the project's own errors,
naming the input; configuration errors are one line before any call; nothing is evaluated."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from openai_server import OpenAIServer

from llmopt.cli import main
from problems.prompt_optimization.data import DataError, load_aqua, load_bbh, load_gsm8k, load_multiarith
from problems.tsp.instances import TSPLIBError, read_tour, read_tsplib

# tmp_path is shared by a test's examples on purpose: each writes (and reads) one file there
#: 300 new random examples per fuzzer on every run of the suite (1000 took 40 s of it on 2 cores);
#: ``HYPOTHESIS_PROFILE=deep`` runs 3000 for a longer hunt.
FUZZ_EXAMPLES = 3000 if os.environ.get("HYPOTHESIS_PROFILE") == "deep" else 300
FUZZ = settings(max_examples=FUZZ_EXAMPLES, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
ROOT = Path(__file__).resolve().parents[1]

numbers = st.one_of(st.integers(-10**30, 10**30).map(str), st.floats(allow_nan=True).map(repr),
                    st.sampled_from(["nan", "inf", "-inf", "1e999", "0x10", "", "--1", "3.", ".5"]))
keys = st.sampled_from(["NAME", "TYPE", "DIMENSION", "EDGE_WEIGHT_TYPE", "EDGE_WEIGHT_FORMAT", "COMMENT",
                        "NODE_COORD_TYPE", "DISPLAY_DATA_TYPE", "CAPACITY"])
values = st.one_of(st.sampled_from(["TSP", "ATSP", "EUC_2D", "CEIL_2D", "ATT", "GEO", "EXPLICIT", "FULL_MATRIX",
                                    "UPPER_ROW", "LOWER_DIAG_ROW", "UPPER_DIAG_ROW", "3", "0", "-2", "1000000000"]),
                   numbers, st.text(max_size=20))
tsplib_lines = st.one_of(
    st.tuples(keys, values).map(lambda kv: f"{kv[0]} : {kv[1]}"),
    st.sampled_from(["NODE_COORD_SECTION", "EDGE_WEIGHT_SECTION", "DISPLAY_DATA_SECTION", "TOUR_SECTION",
                     "EOF", "-1", ""]),
    st.lists(numbers, min_size=1, max_size=4).map(" ".join),
    st.text(max_size=40),
)
tsplib_files = st.lists(tsplib_lines, max_size=30).map("\n".join)


def _write(folder: Path, text: str | bytes, name: str) -> Path:
    """Each example overwrites one file in the test's own tmp_path (removed by pytest)."""
    path = folder / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    return path


@pytest.mark.slow
@FUZZ
@given(tsplib_files)
@example("TYPE : ")  # found by this test: an empty TYPE was an IndexError
def test_tsplib_reader_raises_only_tsplib_errors_naming_the_file(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text, "fuzz.tsp")
    try:
        instance = read_tsplib(path)
    except TSPLIBError as exc:
        assert str(path) in str(exc)
        return
    assert instance.n >= 1 and instance.dist.shape == (instance.n, instance.n)


@pytest.mark.slow
@FUZZ
@given(st.lists(st.one_of(st.sampled_from(["TOUR_SECTION", "DIMENSION : 4", "-1", "EOF", "TYPE : TOUR"]),
                          st.lists(numbers, min_size=1, max_size=3).map(" ".join), st.text(max_size=20)),
                max_size=15).map("\n".join))
def test_tour_reader_raises_only_tsplib_errors(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text, "fuzz.opt.tour")
    try:
        read_tour(path, 4)
    except TSPLIBError as exc:
        assert str(path) in str(exc)


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                           lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                           max_leaves=8)
shaped = st.one_of(
    st.fixed_dictionaries({"examples": st.lists(st.fixed_dictionaries({"input": json_values, "target": json_values}),
                                                max_size=3)}),
    st.lists(st.fixed_dictionaries({"sQuestion": json_values, "lSolutions": json_values}), max_size=3),
    st.fixed_dictionaries({"question": json_values, "options": json_values, "correct": json_values}),
    st.fixed_dictionaries({"question": json_values, "answer": json_values}),
    json_values,
)


@pytest.mark.parametrize("loader,name", [(load_gsm8k, "g.tsv"), (load_gsm8k, "g.jsonl"), (load_bbh, "t.json"),
                                         (load_multiarith, "m.json"), (load_aqua, "a.json")])
@pytest.mark.slow
def test_loaders_raise_only_data_errors_naming_the_file(tmp_path: Path, loader, name: str) -> None:
    import json

    @FUZZ
    @given(st.one_of(st.text(), st.binary(max_size=200), shaped.map(json.dumps),
                     st.lists(shaped.map(json.dumps), max_size=4).map("\n".join),
                     st.lists(st.lists(st.text(max_size=15), max_size=4).map("\t".join), max_size=4).map("\n".join)))
    def check(content: str | bytes) -> None:
        path = _write(tmp_path, content, name)
        try:
            examples = loader(path)
        except DataError as exc:
            assert str(path) in str(exc)
            return
        assert examples and all(isinstance(e.question, str) and isinstance(e.answer, str) for e in examples)

    check()


def test_config_errors_are_one_line_before_any_call(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("FAKE_KEY", "sk-fake-0000000000")
    locked = tmp_path / "ro"
    locked.mkdir()
    with OpenAIServer(lambda prompt, seed: "[1, 2]") as server:
        http = ["--model", "openai/m", "--api-base", server.api_base, "--api-key-env", "FAKE_KEY"]
        cases = [
            (["run", "linreg", "--model", "no-such-provider-model", "--store", str(tmp_path / "a.db")], "unknown model"),
            (["run", "linreg", *http, "--max-usd", "-1", "--store", str(tmp_path / "b.db")], "must be >= 0"),
            (["run", "linreg", *http, "--max-calls", "-5", "--store", str(tmp_path / "c.db")], "must be >= 0"),
            (["run", "linreg", *http, "--store", str(tmp_path / "missing" / "r.db")], "does not exist"),
            (["run", "linreg", *http, "--store", str(tmp_path)], "cannot open store"),
            (["run", "prompt", "--task", "gsm8k", "--data-dir", str(tmp_path / "nodata"), *http,
              "--scorer", "openai/m", "--scorer-api-base", server.api_base, "--scorer-api-key-env", "FAKE_KEY",
              "--store", str(tmp_path / "d.db")], "does not exist"),
        ]
        for argv, message in cases:
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse's own errors
                code = exc.code
            err = capsys.readouterr().err.strip()
            assert code == 2 and message in err and len(err.splitlines()) == 1, (argv, err)
        assert server.requests == []  # no call was made by any of them


def test_nothing_from_a_reply_is_evaluated_as_code() -> None:
    """No eval/exec/pickle/compile anywhere in the package; the one literal_eval reads data files."""
    offenders = []
    for folder in ("llmopt", "problems", "baselines"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            calls = r"(?<![\w.])(eval|exec|compile|__import__)\s*\(|\b(pickle|marshal|dill)\.loads?\s*\("
            for m in re.finditer(calls, text):
                offenders.append(f"{path.relative_to(ROOT)}: {m.group(0)}")
            if "literal_eval" in text and path.name != "data.py":
                offenders.append(f"{path.relative_to(ROOT)}: literal_eval")
    assert offenders == []
