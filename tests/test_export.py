"""llmopt export (CSV, JSON lines) and llmopt.load (pandas)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from fakes import scripted_llm

import llmopt
from llmopt import Budget, LLMProposer, Optimizer, RunStore
from llmopt.cli import main
from llmopt.store.export import dumps, rows
from problems.linear_regression.problem import LinearRegression


@pytest.fixture()
def store(tmp_path: Path) -> Path:
    path = tmp_path / "runs.db"
    with RunStore(path) as s:
        for seed in (0, 1):
            llm, _ = scripted_llm()
            Optimizer(LinearRegression(seed=seed), LLMProposer(llm), seed=seed, store=s, name=f"r{seed}",
                      budget=Budget(max_steps=2, stop_when_solved=False)).run()
    return path


def test_every_table_round_trips_through_csv_and_jsonl(store: Path) -> None:
    with RunStore(store) as s:
        for table in ("trials", "calls", "steps", "runs"):
            records = rows(s, table)
            assert records and {r["run"] for r in records} == {"r0", "r1"}
            back = [json.loads(line) for line in dumps(records, "jsonl").splitlines()]
            assert back == records
            parsed = list(csv.DictReader(io.StringIO(dumps(records, "csv"))))
            assert len(parsed) == len(records) and list(parsed[0]) == list(records[0])
            assert [p["run"] for p in parsed] == [r["run"] for r in records]
        trials = rows(s, "trials", ["r1"])
        assert len(trials) == len(s.trials(s.get_run("r1").id)) and trials[0]["state"] == "COMPLETE"
        with pytest.raises(llmopt.StoreError, match="no run named 'ghost'"):
            rows(s, "trials", ["ghost"])


def test_export_command_writes_files(store: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "calls.csv"
    assert main(["export", "--store", str(store), "--table", "calls", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0].startswith("run,number,role,item,step,model,seed") and len(lines) > 10
    assert main(["export", "--store", str(store), "--run", "r0", "--format", "jsonl"]) == 0
    records = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert records and all(r["run"] == "r0" for r in records)
    assert main(["export", "--store", str(tmp_path / "none.db")]) == 2
    assert "no store at" in capsys.readouterr().err


def test_load_gives_a_dataframe(store: Path) -> None:
    pytest.importorskip("pandas")
    df = llmopt.load(store)
    assert set(df["run"]) == {"r0", "r1"} and {"state", "value", "text", "raw"} <= set(df.columns)
    calls = llmopt.load(store, "calls", runs=["r0"])
    assert (calls["role"] == "optimizer").all() and calls["prompt_tokens"].sum() > 0
