"""Dataset loaders and splits, on the packaged data (or $LLMOPT_DATA) and on broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from problems.prompt_optimization.data import (
    DataError,
    bbh_tasks,
    data_dir,
    load_aqua,
    load_bbh,
    load_gsm8k,
    load_multiarith,
    load_task,
)
from tests.datadir import data_dir as resolved_data

DATA = resolved_data()


def test_shared_data_loads_with_the_paper_splits() -> None:
    gsm = load_task("gsm8k", DATA)
    assert (len(gsm.train), len(gsm.test)) == (261, 1319)  # 3.5% of 7,473; the whole test file
    assert gsm.kind == "number" and gsm.train[0].answer.lstrip("-").replace(".", "").isdigit()
    assert "####" in (gsm.train[0].rationale or "")
    assert len(bbh_tasks(DATA)) == 27
    nav = load_task("bbh/navigate", DATA)
    assert (len(nav.train), len(nav.test), nav.kind) == (50, 200, "bool")
    assert {ex.id for ex in nav.train}.isdisjoint(ex.id for ex in nav.test)
    assert load_task("bbh/snarks", DATA).kind == "choice" and load_task("bbh/word_sorting", DATA).kind == "exact"
    assert load_task("bbh/object_counting", DATA).kind == "number"
    multi, aqua = load_task("multiarith", DATA), load_task("aqua", DATA)
    assert (len(multi.train), len(multi.test), multi.kind) == (0, 600, "number")
    assert (len(aqua.test), aqua.kind) == (254, "choice")
    assert "Answer Choices: (A) " in aqua.test[0].question and aqua.test[0].answer.startswith("(")


def test_splits_are_seeded() -> None:
    a, b = load_task("bbh/web_of_lies", DATA, seed=3), load_task("bbh/web_of_lies", DATA, seed=3)
    c = load_task("bbh/web_of_lies", DATA, seed=4)
    assert [e.id for e in a.train] == [e.id for e in b.train] != [e.id for e in c.train]
    capped = load_task("bbh/web_of_lies", DATA, seed=3, max_train=10)
    assert len(capped.train) == 10 and {e.id for e in capped.train} <= {e.id for e in a.train}
    assert len(capped.test) == len(a.test)  # capping does not move examples into the test split
    three = load_task("bbh/web_of_lies", DATA, train_fraction=0.2, validation_fraction=0.2)
    assert (len(three.train), len(three.validation), len(three.test)) == (50, 50, 150)
    assert len(three.examples("all")) == 250


def test_gsm8k_jsonl_format(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"question": "2+2?", "answer": "2 and 2 make 4.\n#### 4"}) + "\n\n" +
                    json.dumps({"question": "Big?", "answer": "so\n#### 1,000"}) + "\n")
    examples = load_gsm8k(path)
    assert [(e.question, e.answer, e.rationale) for e in examples] == [("2+2?", "4", "2 and 2 make 4."),
                                                                        ("Big?", "1000", "so")]


@pytest.mark.parametrize("loader,name,content,message", [
    (load_gsm8k, "g.tsv", "only one column\n", "g.tsv: line 1: expected question<TAB>answer"),
    (load_gsm8k, "g.tsv", "q\tseventy\tr\n", "g.tsv: line 1: answer 'seventy' is not a number"),
    (load_gsm8k, "g.tsv", "", "g.tsv: no examples"),
    (load_gsm8k, "g.jsonl", '{"question": "q", "answer": "no marker"}\n', "g.jsonl: line 1: expected question"),
    (load_gsm8k, "g.jsonl", "{not json\n", "g.jsonl: line 1: not valid JSON"),
    (load_bbh, "t.json", '{"examples": []}', "t.json: expected"),
    (load_bbh, "t.json", '{"examples": [{"input": "q"}]}', "t.json: example 0: expected string fields"),
    (load_bbh, "t.json", "[1, 2", "t.json: not valid JSON"),
    (load_multiarith, "m.json", '[{"sQuestion": "q", "lSolutions": []}]', "m.json: item 0: expected"),
    (load_aqua, "a.json", '{"question": "q", "options": ["A)1"], "correct": "B"}\n', "a.json: line 1: expected"),
])
def test_malformed_files_are_named(tmp_path: Path, loader, name: str, content: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace("[", r"\[")):
        loader(path)


def test_missing_data_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LLMOPT_DATA", raising=False)
    packaged = Path(__file__).resolve().parents[1] / "problems" / "data"
    assert data_dir(None).resolve() == packaged  # nothing given: the copy shipped with the package
    with pytest.raises(DataError, match=r"data directory .*nope \(--data-dir\) does not exist"):
        data_dir(tmp_path / "nope")
    monkeypatch.setenv("LLMOPT_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match=r"data directory .*gone \(\$LLMOPT_DATA\) does not exist"):
        data_dir(None)
    monkeypatch.setenv("LLMOPT_DATA", "")  # empty: unset
    assert data_dir(None).resolve() == packaged
    monkeypatch.setenv("LLMOPT_DATA", str(tmp_path))
    assert data_dir(None) == tmp_path and data_dir(DATA) == Path(DATA)  # --data-dir > $LLMOPT_DATA > packaged
    with pytest.raises(DataError, match=r"gsm8k[/\\]gsm_train.tsv not found"):
        load_task("gsm8k", tmp_path)
    with pytest.raises(DataError, match="unknown BBH task 'nope' .known: boolean_expressions"):
        load_task("bbh/nope", DATA)
    with pytest.raises(DataError, match="unknown task 'mmlu'"):
        load_task("mmlu", DATA)
    with pytest.raises(DataError, match="train fraction"):
        load_task("bbh/navigate", DATA, train_fraction=1.5)
