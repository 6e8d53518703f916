"""`llmopt run tsp` and `llmopt baselines tsp` end to end (random control; no model needed)."""

from __future__ import annotations

from pathlib import Path

from llmopt import RunStore
from llmopt.cli import main


def test_run_tsp_reports_the_gap_and_the_store_feeds_the_table(tmp_path: Path, capsys) -> None:
    store = str(tmp_path / "runs.db")
    assert main(["run", "tsp", "--n", "8", "--seed", "1", "--proposer", "random", "--steps", "40",
                 "--store", store, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "gap_pct" in out and "optimum_proved" in out
    run = RunStore(store).get_run("tsp-random-seed1")
    assert run.config["problem"]["optimum_proved"] is True and run.config["problem"]["n"] == 8
    assert main(["show", "--store", store, "tsp-random-seed1"]) == 0
    assert "gap %" in capsys.readouterr().out
    assert main(["baselines", "tsp", "--n", "8", "--seeds", "2", "--gls-time", "0.2", "--store", store]) == 0
    table = capsys.readouterr().out
    assert "n=8" in table and "Held-Karp (exact)" in table and "random search (loop)" in table
    assert "nearest" in table.lower() and "christofides" in table.lower()


def test_baselines_on_tsplib_compare_with_the_opt_tour(capsys, monkeypatch) -> None:
    monkeypatch.delenv("LLMOPT_DATA", raising=False)  # by name: the packaged eil51 and its optimal tour
    assert main(["baselines", "tsp", "--tsplib", "eil51", "--gls-time", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "eil51" in out and "proved optimum 426" in out and "eil51.opt.tour has length 426" in out


def test_a_malformed_tsplib_file_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.tsp"
    bad.write_text("TYPE: TSP\nDIMENSION: 3\nEDGE_WEIGHT_TYPE: EUC_2D\nNODE_COORD_SECTION\n1 0 0\n2 oops\n")
    assert main(["run", "tsp", "--tsplib", str(bad), "--proposer", "random", "--store", str(tmp_path / "r.db")]) == 2
    err = capsys.readouterr().err
    assert "bad.tsp:6" in err and len(err.strip().splitlines()) == 1


def test_tsp_shows_the_papers_ten_best_traces(tmp_path: Path, capsys) -> None:
    from llmopt.cli import build_parser
    from llmopt.experiments.runs import make_proposer
    from problems.tsp.cli import CLI as TSP

    args = build_parser().parse_args(["run", "tsp", "--n", "6", "--store", str(tmp_path / "r.db")])
    assert make_proposer(args, TSP.from_args(args)).metaprompt.max_shown == 10
    args = build_parser().parse_args(["run", "tsp", "--n", "6", "--show", "3"])
    assert make_proposer(args, TSP.from_args(args)).metaprompt.max_shown == 3
