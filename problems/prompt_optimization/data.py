"""Datasets of prompt optimization, read from a data directory in the OPRO repository's formats.

* ``gsm8k/gsm_train.tsv``, ``gsm8k/gsm_test.tsv``: question, numeric answer, rationale (TSV, no
  header); the original JSONL (``{"question", "answer": "... #### 72"}``) is read too;
* ``bbh/<task>.json``: ``{"examples": [{"input", "target"}]}``, 27 tasks;
* ``multiarith/MultiArith.json``: a list of ``{"sQuestion", "lSolutions"}``;
* ``aqua/AQuA.json``: JSON lines ``{"question", "options": ["A)..."], "correct"}``.

The directory comes from ``--data-dir``, else ``$LLMOPT_DATA``, else the copy shipped with the
package (:func:`problems.data.data_dir`); nothing is downloaded. A missing or malformed file is a
:class:`DataError` that names the file (and the line).
"""

from __future__ import annotations

import ast
import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmopt.seeding import stream
from problems.data import DataError, data_dir  # shared by every problem
from problems.prompt_optimization.grading import Kind, infer_kind


@dataclass(frozen=True)
class Example:
    id: str  # "<task>:<index in its file>"
    question: str
    answer: str
    rationale: str | None = None


@dataclass(frozen=True)
class Task:
    """A dataset split for prompt optimization: score on ``train``, report on ``test``."""

    name: str
    kind: Kind
    train: tuple[Example, ...]
    test: tuple[Example, ...]
    validation: tuple[Example, ...] = ()
    split: dict[str, Any] = field(default_factory=dict)  # how it was split (recorded with runs)

    def examples(self, split: str) -> tuple[Example, ...]:
        if split == "all":
            return self.train + self.validation + self.test
        if split not in ("train", "validation", "test"):
            raise DataError(f"unknown split {split!r} (train, validation, test or all)")
        return getattr(self, split)


def _need(path: Path) -> Path:
    if not path.is_file():
        raise DataError(f"data file {path} not found")
    return path


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_need(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise DataError(f"data file {path}: not valid JSON ({exc})") from None


def _number_text(value: Any) -> str:
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


# --- loaders ------------------------------------------------------------------------------
def load_gsm8k(path: str | os.PathLike[str], name: str = "gsm8k") -> list[Example]:
    """GSM8K from the OPRO TSV (question, answer, rationale) or the original JSONL."""
    path = _need(Path(path))
    if path.suffix in (".jsonl", ".json"):
        return _load_gsm8k_jsonl(path, name)
    out = []
    try:
        with path.open(encoding="utf-8", newline="") as f:
            for line, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(row) < 2 or not row[0].strip() or not row[1].strip():
                    raise DataError(f"data file {path}: line {line}: expected question<TAB>answer[<TAB>rationale], "
                                    f"got {len(row)} column(s)")
                answer = row[1].strip().replace(",", "")
                _check_number(answer, path, line)
                out.append(Example(f"{name}:{line - 1}", row[0].strip(), answer,
                                   _rationale(row[2]) if len(row) > 2 else None))
    except UnicodeDecodeError as exc:
        raise DataError(f"data file {path}: not UTF-8 text ({exc})") from None
    except csv.Error as exc:
        raise DataError(f"data file {path}: {exc}") from None
    if not out:
        raise DataError(f"data file {path}: no examples")
    return out


def _rationale(text: str) -> str:
    """The TSV stores rationales as Python bytes literals (b'...'); read them as data, never as code."""
    text = text.strip()
    if text[:2] in ("b'", 'b"'):
        try:
            value = ast.literal_eval(text)  # literals only: no code runs
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return text
    return text


def _check_number(answer: str, path: Path, line: int) -> None:
    try:
        float(answer)
    except ValueError:
        raise DataError(f"data file {path}: line {line}: answer {answer[:40]!r} is not a number") from None


def _load_gsm8k_jsonl(path: Path, name: str) -> list[Example]:
    out = []
    for line, obj in _json_lines(path):
        if not isinstance(obj.get("question"), str) or not isinstance(obj.get("answer"), str) \
                or "####" not in obj["answer"]:
            raise DataError(f"data file {path}: line {line}: expected question and an answer ending in '#### N'")
        rationale, answer = obj["answer"].rsplit("####", 1)
        answer = answer.strip().replace(",", "")
        _check_number(answer, path, line)
        out.append(Example(f"{name}:{len(out)}", obj["question"].strip(), answer, rationale.strip()))
    if not out:
        raise DataError(f"data file {path}: no examples")
    return out


def _json_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    out = []
    try:
        lines = _need(path).read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"data file {path}: not UTF-8 text ({exc})") from None
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise DataError(f"data file {path}: line {line}: not valid JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise DataError(f"data file {path}: line {line}: expected a JSON object")
        out.append((line, obj))
    return out


def load_bbh(path: str | os.PathLike[str], name: str | None = None) -> list[Example]:
    """One BIG-Bench Hard task file."""
    path = Path(path)
    name = name or f"bbh/{path.stem}"
    data = _read_json(path)
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list) or not examples:
        raise DataError(f"data file {path}: expected {{\"examples\": [{{\"input\", \"target\"}}, ...]}}")
    out = []
    for i, ex in enumerate(examples):
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str) or not isinstance(ex.get("target"), str):
            raise DataError(f"data file {path}: example {i}: expected string fields input and target")
        out.append(Example(f"{name}:{i}", ex["input"], ex["target"].strip()))
    return out


def load_multiarith(path: str | os.PathLike[str], name: str = "multiarith") -> list[Example]:
    path = Path(path)
    data = _read_json(path)
    if not isinstance(data, list) or not data:
        raise DataError(f"data file {path}: expected a JSON list of {{\"sQuestion\", \"lSolutions\"}}")
    out = []
    for i, ex in enumerate(data):
        try:
            question, solutions = ex["sQuestion"], ex["lSolutions"]
            if not isinstance(question, str) or not solutions:
                raise TypeError
            answer = _number_text(solutions[0])
        except (KeyError, TypeError, ValueError, IndexError, OverflowError):
            raise DataError(f"data file {path}: item {i}: expected sQuestion and a numeric lSolutions") from None
        out.append(Example(f"{name}:{i}", question.strip(), answer))
    return out


def load_aqua(path: str | os.PathLike[str], name: str = "aqua") -> list[Example]:
    """AQuA: the options become ``Answer Choices: (A) ... (B) ...`` and the answer ``(C)``."""
    path = Path(path)
    out = []
    for line, obj in _json_lines(path):
        options, correct = obj.get("options"), obj.get("correct")
        if not isinstance(obj.get("question"), str) or not isinstance(options, list) or not options \
                or not all(isinstance(o, str) and len(o) >= 2 and o[1] == ")" for o in options) \
                or not isinstance(correct, str) or correct not in [o[0] for o in options]:
            raise DataError(f"data file {path}: line {line}: expected question, options like 'A)...' and "
                            f"correct naming one of them")
        choices = " ".join(f"({o[0]}) {o[2:].strip()}" for o in options)
        out.append(Example(f"{name}:{len(out)}", f"{obj['question'].strip()}\nAnswer Choices: {choices}",
                           f"({correct})", obj.get("rationale") if isinstance(obj.get("rationale"), str) else None))
    if not out:
        raise DataError(f"data file {path}: no examples")
    return out


# --- tasks and splits -----------------------------------------------------------------------
def bbh_tasks(root: Path) -> list[str]:
    folder = root / "bbh"
    return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []


TASK_NAMES = "gsm8k, bbh/<task>, multiarith, aqua"

#: The paper's training shares: 3.5% of GSM8K's training file, 20% of each BBH task. MultiArith
#: and AQuA are transfer sets (everything is test) unless a training share is given.
DEFAULT_TRAIN_FRACTION = {"gsm8k": 0.035, "bbh": 0.2, "multiarith": 0.0, "aqua": 0.0}


def _examples(name: str, root: Path) -> tuple[list[Example], list[Example] | None]:
    """(pool to split, fixed test set or None)."""
    if name == "gsm8k":
        return load_gsm8k(root / "gsm8k" / "gsm_train.tsv"), load_gsm8k(root / "gsm8k" / "gsm_test.tsv", "gsm8k-test")
    if name.startswith("bbh/"):
        task = name[4:]
        if task not in bbh_tasks(root):
            known = ", ".join(bbh_tasks(root)) or f"none found in {root / 'bbh'}"
            raise DataError(f"unknown BBH task {task!r} (known: {known})")
        return load_bbh(root / "bbh" / f"{task}.json", name), None
    if name == "multiarith":
        return load_multiarith(root / "multiarith" / "MultiArith.json"), None
    if name == "aqua":
        return load_aqua(root / "aqua" / "AQuA.json"), None
    raise DataError(f"unknown task {name!r} (expected {TASK_NAMES})")


def load_task(name: str, root: str | os.PathLike[str] | None = None, *, train_fraction: float | None = None,
              validation_fraction: float = 0.0, seed: int = 0, max_train: int | None = None) -> Task:
    """Load a task and split it with a seeded shuffle.

    GSM8K's training examples come from its training file and its test set is the test file;
    the other tasks are split from one pool: ``train_fraction`` (default: the paper's), then
    ``validation_fraction``, the rest is test. ``max_train`` caps the training examples (a
    cheaper score; the dropped ones are not moved to test).
    """
    root = data_dir(root)
    family = "bbh" if name.startswith("bbh/") else name
    fraction = DEFAULT_TRAIN_FRACTION.get(family, 0.0) if train_fraction is None else train_fraction
    if not 0.0 <= fraction <= 1.0 or not 0.0 <= validation_fraction <= 1.0 or fraction + validation_fraction > 1.0:
        raise DataError(f"train fraction {fraction} and validation fraction {validation_fraction} must be in "
                        "[0, 1] and sum to at most 1")
    if max_train is not None and max_train < 1:
        raise DataError(f"max_train must be >= 1, got {max_train}")
    pool, fixed_test = _examples(name, root)
    order = stream(seed, f"split:{name}").permutation(len(pool))
    n_train = int(fraction * len(pool))  # floor, as the official code: 3.5% of 7,473 is 261
    n_val = int(validation_fraction * len(pool))
    train_idx = sorted(order[:n_train])
    val_idx = sorted(order[n_train:n_train + n_val])
    rest_idx = sorted(order[n_train + n_val:])
    if max_train is not None:
        train_idx = sorted(order[:min(n_train, max_train)])
    train = tuple(pool[i] for i in train_idx)
    test = tuple(fixed_test) if fixed_test is not None else tuple(pool[i] for i in rest_idx)
    kind = infer_kind(ex.answer for ex in pool)
    split = {"seed": seed, "train_fraction": fraction, "validation_fraction": validation_fraction,
             "max_train": max_train, "train": len(train), "validation": len(val_idx), "test": len(test)}
    return Task(name, kind, train, test, tuple(pool[i] for i in val_idx), split)
