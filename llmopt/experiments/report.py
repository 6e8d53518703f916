"""Plain-text tables of runs, read from a result or straight from the store."""

from __future__ import annotations

import json
from typing import Any, Sequence

from llmopt.optimizer import RunResult
from llmopt.problem import Direction, Problem
from llmopt.store.sqlite import RunRecord, RunStore, Usage

Table = list[list[str]]


def format_table(rows: Sequence[Sequence[Any]], header: bool = True) -> str:
    """Left-aligned columns; the first row is a header unless ``header`` is False."""
    text = [[str(cell) for cell in row] for row in rows]
    if not text:
        return ""
    widths = [max(len(row[i]) for row in text if i < len(row)) for i in range(max(map(len, text)))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in text]
    if header:
        lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(rows: Sequence[Sequence[Any]]) -> str:
    """The same table in GitHub Markdown (first row the header), for READMEs and notes."""
    text = [[str(cell).replace("|", "\\|") for cell in row] for row in rows]
    if not text:
        return ""
    lines = ["| " + " | ".join(row) + " |" for row in text]
    lines.insert(1, "|" + "|".join("---" for _ in text[0]) + "|")
    return "\n".join(lines)


def _usage_cells(u: Usage) -> tuple[str, str, str]:
    calls = f"{u.calls} ({u.cache_hits} cached, {u.failed_calls} failed)" if u.calls else "0"
    return calls, f"{u.prompt_tokens} prompt + {u.completion_tokens} completion", u.format_dollars()


def shown_text(text: str | None) -> str:
    """A solution's text for a table: quoted when it would print as nothing (the empty instruction
    is a real solution of prompt optimization, and a blank cell reads as a missing one)."""
    if text is None:
        return "-"
    return text if text.strip() else json.dumps(text)


def run_summary(result: RunResult, problem: Problem) -> Table:
    best = result.best
    c = result.counts
    calls, tokens, cost = _usage_cells(result.usage)
    rows = [
        ["run", result.name or "(not stored)"],
        ["stopped by", f"{result.stop_reason.value}: {result.stop_detail}"],
        ["steps", result.steps],
        ["best", "-" if best is None else f"{shown_text(best.text)}  (value {best.value:.6g}, step {best.step})"],
        ["trials", f"{sum(c.values())}: {c['COMPLETE']} complete, {c['INVALID']} invalid, "
                   f"{c['DUPLICATE']} duplicate, {c['FAILED']} failed"],
        ["LLM calls", calls],
        ["tokens", tokens],
        ["cost", cost],
    ]
    if len(result.usage_by_role) > 1 or "scorer" in result.usage_by_role:
        for role, used in sorted(result.usage_by_role.items()):
            role_calls, role_tokens, role_cost = _usage_cells(used)
            rows.append([f"  {role}", f"{role_calls}; {used.tokens} tokens; {role_cost}"])
    rows += [
        ["wall time", f"{result.elapsed_s:.1f} s"],
    ]
    rows += [[k, "-" if v is None else (f"{v:.6g}" if isinstance(v, float) else v)] for k, v in result.metrics.items()]
    return rows


def runs_table(store: RunStore) -> Table:
    rows: Table = [["run", "problem", "proposer", "status", "steps", "evals", "best", "calls", "tokens", "cost"]]
    for run in store.runs():
        trials = store.trial_rows(run.id)
        values = [r["value"] for r in trials if r["state"] == "COMPLETE"]
        best = _best(values, run)
        usage = store.usage(run.id)
        steps = max((r["step"] for r in trials), default=0)
        status = run.stop_reason or store.run_status(run)  # a dead "running" run shows as interrupted
        rows.append([run.name, run.problem, _proposer_label(run), status, steps, len(values),
                     "-" if best is None else f"{best:.6g}", usage.calls, usage.tokens, usage.format_dollars()])
    return rows


def steps_table(store: RunStore, run: RunRecord) -> Table:
    """One run's best-so-far per step."""
    optimum = run.config.get("problem", {}).get("optimum")
    rows: Table = [["step", "complete", "invalid", "duplicate", "failed", "step best", "best so far", "calls"]
                   + (["gap %"] if optimum else [])]
    calls_per_step: dict[int, int] = {}
    for call in store.call_rows(run.id):
        calls_per_step[call["step"]] = calls_per_step.get(call["step"], 0) + 1
    per_step: dict[int, list[Any]] = {}
    for r in store.trial_rows(run.id):
        per_step.setdefault(r["step"], []).append(r)
    best: float | None = None
    for step in sorted(per_step):
        trials = per_step[step]
        count = {s: sum(1 for t in trials if t["state"] == s) for s in ("COMPLETE", "INVALID", "DUPLICATE", "FAILED")}
        step_best = _best([t["value"] for t in trials if t["state"] == "COMPLETE"], run)
        if step_best is not None:
            best = step_best if best is None else _best([best, step_best], run)
        rows.append([step, count["COMPLETE"], count["INVALID"], count["DUPLICATE"], count["FAILED"],
                     "-" if step_best is None else f"{step_best:.6g}", "-" if best is None else f"{best:.6g}",
                     calls_per_step.get(step, 0)]
                    + ([("-" if best is None else f"{100 * (best - optimum) / optimum:.2f}")] if optimum else []))
    return rows


def _best(values: list[float], run: RunRecord) -> float | None:
    if not values:
        return None
    minimize = run.config.get("direction", Direction.MINIMIZE.value) == Direction.MINIMIZE.value
    return min(values) if minimize else max(values)


def _proposer_label(run: RunRecord) -> str:
    proposer = run.config.get("proposer", {})
    if proposer.get("kind") == "llm":
        return f"llm:{proposer.get('llm', {}).get('model')}"
    return str(proposer.get("kind", "?"))
