"""Plain-text tables of runs, read from a result or straight from the store."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import replace
from typing import Any, Iterable, Sequence

from llmopt.history import SolutionHistory, Trial, TrialState
from llmopt.novelty import similar_count
from llmopt.optimizer import RunResult
from llmopt.problem import Direction, Problem, gap_pct
from llmopt.programs.source import diff
from llmopt.store.sqlite import RunRecord, RunStore, Usage
from llmopt.validation import chosen, evaluations, validation_scores

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
    cached = f" ({u.cached_prompt_tokens} from the provider's prompt cache)" if u.cached_prompt_tokens else ""
    return calls, f"{u.prompt_tokens} prompt + {u.completion_tokens} completion{cached}", u.format_dollars()


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
        *_chosen_rows(result),
        ["trials", f"{sum(c.values())}: {c['COMPLETE']} complete, {c['INVALID']} invalid, "
                   f"{c['DUPLICATE']} duplicate{_similar_words(result.history)}, {c['FAILED']} failed"],
        *_failure_rows(result.history),
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


def _similar_words(trials: Iterable[Trial]) -> str:
    """`` (N too similar)``: the duplicates that novelty filtering rejected, if any."""
    count = similar_count(trials)
    return f" ({count} too similar)" if count else ""


_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


def most_common_failure(trials: Sequence[Trial], state: TrialState) -> tuple[int, int, Trial] | None:
    """(how many, of how many, an example) of the most common reason among the ``state`` trials (FAILED:
    scoring raised or gave no finite number; INVALID: a reply that did not decode); reasons that
    differ only in their numbers count as one. None when there are none."""
    failed = [t for t in trials if t.state is state and t.error]
    if not failed:
        return None
    groups = Counter(_NUMBER.sub("N", t.error or "")[:200] for t in failed)
    reason, count = groups.most_common(1)[0]
    example = next(t for t in failed if _NUMBER.sub("N", t.error or "")[:200] == reason)
    return count, len(failed), example


def _failure_rows(history: SolutionHistory) -> Table:
    """A summary's rows naming the most common failure and invalid reply, each with one example: a run
    whose every evaluation failed says why, not only how many."""
    rows: Table = []
    for state, label in ((TrialState.FAILED, "most common failure"), (TrialState.INVALID, "most common invalid")):
        found = most_common_failure(list(history), state)
        if found is None:
            continue
        count, total, t = found
        solution = t.text if t.text is not None else (t.raw or "")
        shown = solution if len(solution) <= 60 else solution[:57] + "..."
        rows.append([label, f"{count} of {total}: {(t.error or '')[:300]}  (e.g. trial #{t.number}: {shown})"])
    return rows


def _chosen_rows(result: RunResult) -> Table:
    """The run's pick when it ran validations: the trial best on validation, with both scores."""
    pick, scores = result.chosen, validation_scores(result.validations)
    if not result.validations:
        return []
    if pick is None or pick.number not in scores:
        return [["chosen (best on validation)", "- (no solution could be scored on validation)"]]
    return [["chosen (best on validation)", f"{shown_text(pick.text)}  (validation {scores[pick.number]:.6g}, "
                                            f"training {pick.value:.6g}, trial #{pick.number}, step {pick.step})"]]


def validations_table(store: RunStore, run: RunRecord) -> Table:
    """A run's validations (``--eval-every``): per evaluation step, each solution validated with its
    training and validation score, and the best validation score so far (no rows: none ran)."""
    rows = store.validations(run.id)
    if not rows:
        return []
    trials = {t.number: t for t in store.trials(run.id)}
    so_far = {p.step: p for p in evaluations(rows, run.direction)}
    out: Table = [["step", "trial", "training", "validation", "best validation so far", "solution"]]
    sign = -1.0 if run.direction is Direction.MAXIMIZE else 1.0  # each step's best validation first
    for row in sorted(rows, key=lambda r: (r.step, r.value is None, sign * (r.value or 0.0), r.number)):
        trial, point = trials.get(row.number), so_far[row.step]
        train = "-" if trial is None or trial.value is None else f"{trial.value:.6g}"
        value = f"{row.value:.6g}" if row.value is not None else f"- ({(row.error or 'failed')[:60]})"
        best = "-" if point.best_so_far is None else f"{point.best_so_far:.6g} (step {point.best_so_far_step})"
        text = "-" if trial is None else shown_text(trial.text)
        out.append([row.step, f"#{row.number}", train, value, best, text if len(text) <= 70 else text[:67] + "..."])
    return out


def validations_report(store: RunStore, run: RunRecord) -> str:
    """What ``llmopt show NAME`` prints after the steps when the run ran validations: a heading, the
    :func:`validations_table` and the chosen solution ("" for a run without validations)."""
    table = validations_table(store, run)
    if not table:
        return ""
    settings = run.config.get("validation", {})
    top = "all" if settings.get("top") is None else f"the top {settings.get('top')}"
    lines = [f"validation (every {settings.get('every', '?')} steps, {top} by training score):", format_table(table)]
    rows = store.validations(run.id)
    pick = chosen(rows, store.trials(run.id), run.direction)
    if pick is not None:
        lines.append(f"chosen (best on validation): #{pick.number} {shown_text(pick.text)}  (validation "
                     f"{validation_scores(rows)[pick.number]:.6g}, training {pick.value:.6g}, step {pick.step})")
    return "\n".join(lines)


def stored_history(store: RunStore, run: RunRecord) -> SolutionHistory:
    """A stored run's history, rebuilt from its trials alone (no Problem object: no solutions). Each
    trial is keyed by its number, which is unique, not by the stored ``repr`` of its key."""
    return SolutionHistory(run.direction, [replace(t, key=("trial", t.number)) for t in store.trials(run.id)])


def runs_table(store: RunStore) -> Table:
    rows: Table = [["run", "problem", "proposer", "status", "steps", "evals", "best", "calls", "tokens", "cost"]]
    for run in store.runs():
        history = stored_history(store, run)
        best = history.best()
        usage = store.usage(run.id)
        steps = max((t.step for t in history), default=0)
        status = run.stop_reason or store.run_status(run)  # a dead "running" run shows as interrupted
        rows.append([run.name, run.problem, proposer_name(run.config), status, steps, len(history.completed()),
                     "-" if best is None else f"{best.value:.6g}", usage.calls, usage.tokens, usage.format_dollars()])
    return rows


def steps_table(store: RunStore, run: RunRecord) -> Table:
    """One run's best-so-far per step."""
    optimum = run.optimum
    history = stored_history(store, run)
    raced = any("race" in t.metrics for t in history)  # a --race run: how many were scored in part
    similar = similar_count(history) > 0  # a --novelty-threshold run: how many duplicates were only similar
    rows: Table = [["step", "complete", "invalid", "duplicate", "failed", "step best", "best so far", "calls"]
                   + (["raced out"] if raced else []) + (["too similar"] if similar else [])
                   + (["gap %"] if optimum else [])]
    calls_per_step = Counter(call.step for call in store.calls(run.id) if call.choice == 0)
    best_after = dict(history.best_so_far("step"))
    per_step: dict[int, list[Trial]] = {}
    for t in history:
        per_step.setdefault(t.step, []).append(t)
    for step in sorted(per_step):
        trials = per_step[step]
        count = Counter(t.state for t in trials)
        step_best = _best([float(t.value) for t in trials if t.ok], run.direction)  # type: ignore[arg-type]
        best = best_after[step]
        gap = None if best is None else gap_pct(best, optimum, run.direction)
        rows.append([step, count[TrialState.COMPLETE], count[TrialState.INVALID], count[TrialState.DUPLICATE],
                     count[TrialState.FAILED], "-" if step_best is None else f"{step_best:.6g}",
                     "-" if best is None else f"{best:.6g}", calls_per_step.get(step, 0)]
                    + ([sum(1 for t in trials if "race" in t.metrics)] if raced else [])
                    + ([similar_count(trials)] if similar else [])
                    + (["-" if gap is None else f"{gap:.2f}"] if optimum else []))
    return rows


def step_detail(store: RunStore, run: RunRecord, step: int) -> str:
    """One step as it happened: its meta-prompt (if the step has one), then each trial with its
    state, score and parents, the prompt of its call where the call had its own (an evolutionary
    operator's request), and the reply."""
    steps = {s.step: s for s in store.steps(run.id)}
    if step not in steps:
        raise ValueError(f"run {run.name!r} has no step {step} (it has steps {min(steps, default=0)}.."
                         f"{max(steps, default=0)})")
    own = {c.number: c.prompt for c in store.calls(run.id, role="optimizer") if c.prompt is not None}
    out = [f"step {step} of run {run.name}"]
    if steps[step].prompt:
        out += ["", "--- prompt of the step ---", steps[step].prompt]
    trials = store.trials(run.id)
    texts = {t.number: t.text for t in trials}
    for t in trials:
        if t.step != step:
            continue
        score = "" if t.value is None else f" {t.value:.6g}"
        parents = f" parents {', '.join(f'#{n}' for n in t.parents)}" if t.parents else ""
        parents += f" from {origin_text(t.origin)}" if t.origin else ""
        twin = f" of #{t.duplicate_of}" if t.duplicate_of is not None else ""
        out += ["", f"--- trial #{t.number}: {t.state.value}{twin}{score}{parents} ({t.source}) ---"]
        if t.number in own:
            out += ["prompt:", own[t.number]]
        if t.raw is not None:
            out += ["reply:", t.raw]
        elif t.text is not None:
            out += ["solution:", t.text]
        out += _changes(t, texts)
        if t.error:
            out += [f"error: {t.error}"]
    return "\n".join(out)


def _changes(trial: Trial, texts: dict[int, str | None]) -> list[str]:
    """What a trial changed of its first parent (a unified diff, for solutions that span lines: a
    program's), and its evaluation's feedback."""
    out = []
    parent = texts.get(trial.parents[0]) if trial.parents else None
    if parent is not None and trial.text is not None and "\n" in parent + trial.text:
        change = diff(parent, trial.text, names=(f"#{trial.parents[0]}", f"#{trial.number}"))
        out += [f"diff against #{trial.parents[0]}:", change.rstrip("\n") or "(no change)"]
    feedback = trial.metrics.get("feedback")
    if isinstance(feedback, str) and feedback.strip():
        out += ["feedback:", feedback.strip()]
    return out


def _best(values: list[float], direction: Direction) -> float | None:
    if not values:
        return None
    return min(values) if direction is Direction.MINIMIZE else max(values)


def proposer_name(config: dict[str, Any]) -> str:
    """What a recorded run ran, by its proposer and model, in the one scheme every command uses
    (``show``, the tables' ``ran`` column, plots and the report): ``opro local/smollm2``,
    ``llm-iid local/smollm2``, ``evoprompt-ga local/smollm2``, ``optuna:tpe``, ``random``; the
    model as it is written in ``--model``. ``config``: the run's recorded configuration."""
    proposer = config.get("proposer", {})
    kind = str(proposer.get("kind", "?"))
    model = proposer.get("llm", {}).get("model")
    if kind == "llm":
        return f"opro {model}"
    if kind == "optuna":
        return f"optuna:{proposer.get('algorithm')}"
    return f"{kind} {model}" if model else kind


def origin_text(origin: dict[str, Any]) -> str:
    """A trial's origin in words: ``island 3``, ``cell (2, 5)``, ``island 1, cell (0, 4)``."""
    def word(value: Any) -> str:
        return f"({', '.join(str(v) for v in value)})" if isinstance(value, (list, tuple)) else str(value)
    return ", ".join(f"{name} {word(value)}" for name, value in origin.items())
