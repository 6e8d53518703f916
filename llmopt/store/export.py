"""Export a store's records as CSV or JSON lines, or load them as a pandas DataFrame.

Tables: ``trials`` (every proposal with its state, text, value, raw reply and error),
``calls`` (every LLM call: role, model, seed, tokens, dollars, latency, cache hit, error),
``steps`` (each step's meta-prompt), ``validations`` (each solution scored on the validation split,
by step: ``--eval-every``) and ``runs`` (configuration, versions, stop reason). Each
row carries its run's name. Nothing here reads or writes API keys: the store never holds one.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict
from typing import Any, Iterable, Sequence

from llmopt.store.location import open_store
from llmopt.store.sqlite import RunStore

TABLES = ("trials", "calls", "steps", "validations", "facts", "runs")
FORMATS = ("csv", "jsonl")


def rows(store: RunStore, table: str = "trials", runs: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of ``table`` for the named runs (default: every run), run name first."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r} (expected one of {', '.join(TABLES)})")
    chosen = [store.get_run(name) for name in runs] if runs else store.runs()
    out: list[dict[str, Any]] = []
    for run in chosen:
        if table == "runs":
            out.append({"run": run.name, "problem": run.problem, "status": run.status,
                        "stop_reason": run.stop_reason, "stop_detail": run.stop_detail, "elapsed_s": run.elapsed_s,
                        "created": run.created, "config": json.dumps(run.config, sort_keys=True),
                        "versions": json.dumps(run.versions, sort_keys=True)})
            continue
        if table == "validations":  # read as the store's version has it (none before version 4)
            out += [{"run": run.name, **asdict(v)} for v in store.validations(run.id)]
            continue
        out += [{"run": run.name, **record} for record in store.records(table, run.id)]
    return out


def dumps(records: Iterable[dict[str, Any]], fmt: str) -> str:
    records = list(records)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False, sort_keys=False) + "\n" for r in records)
    if fmt == "csv":
        buffer = io.StringIO()
        fields = list(dict.fromkeys(k for r in records for k in r))
        writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        return buffer.getvalue()
    raise ValueError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


def load(store: str | os.PathLike[str], table: str = "trials", runs: Sequence[str] | None = None) -> Any:
    """A table of a store as a pandas DataFrame (pandas is optional: ``pip install pandas``)."""
    try:
        import pandas as pd
    except ImportError:
        raise ImportError("llmopt.load needs pandas: pip install pandas (or use llmopt export)") from None
    with open_store(store, readonly=True) as s:
        return pd.DataFrame(rows(s, table, runs))
