"""``llmopt report``: one self-contained HTML page of a grid's runs, or of any runs of a store.

The page needs nothing but a browser: the figures are PNGs inside it (``data:`` URIs), the style
is inline, there is no script at all, and a Content-Security-Policy says so (``default-src
'none'``), so a page opened from disk loads nothing and runs nothing. Per problem it holds the
comparison table of :func:`llmopt.experiments.tables.tables` (with its notes), the figures of
:func:`llmopt.experiments.plot.write_figures`, each configuration's best solution per seed, and
for every run a closed ``<details>`` with each step's meta-prompt (an identical prompt is shown
once and referred to after) and every trial's raw LLM reply, state, value and error.

Everything from the store is escaped: replies are hostile text (``</script>``, ``<img onerror>``)
and render as text.

How a run of the page is found in the store (:func:`stored_runs`): an outcome read from the store
carries its run (``outcome.record``); otherwise a grid's outcome is the run named ``cell.name``, else
the store's run of the same problem and seed whose trials are the outcome's (number, state and
solution text of every trial). The named run is tried first, no run is given to two outcomes, and
nothing depends on the order in which :func:`llmopt.experiments.grouping.collect_runs` lists its runs.
"""

from __future__ import annotations

import base64
import html
import importlib.metadata
import json
import re
import tempfile
from collections import Counter
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Sequence

from llmopt.experiments.compare import Collected, Outcome
from llmopt.experiments.plot import write_figures
from llmopt.experiments.tables import TableOptions, tables
from llmopt.programs.source import diff
from llmopt.store import RunRecord, RunStore

STYLE = """
:root { color-scheme: light; --ink: #1d2330; --muted: #5b6475; --line: #d9dde5; --band: #f4f6f9; --accent: #2f5fb3; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1320px; margin: 0 auto; padding: 20px 20px 60px; }
header.top { border-bottom: 3px solid var(--accent); padding-bottom: 12px; margin-bottom: 18px; }
h1 { font-size: 26px; margin: 0 0 10px; }
h2 { font-size: 21px; margin: 36px 0 8px; padding-top: 8px; border-top: 1px solid var(--line); }
h3 { font-size: 17px; margin: 24px 0 8px; }
h4 { font-size: 15px; margin: 16px 0 6px; }
dl.facts { display: grid; grid-template-columns: repeat(2, max-content minmax(0, 1fr)); gap: 3px 16px; margin: 0; }
@media (max-width: 800px) { dl.facts { grid-template-columns: max-content minmax(0, 1fr); } }
dl.facts dt { color: var(--muted); }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
nav.toc { font-size: 14px; color: var(--muted); }
nav.toc a { color: var(--accent); margin-right: 14px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 12.5px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 3px 6px; text-align: left; vertical-align: top; }
thead th { background: var(--band); }
tbody tr:nth-child(even) { background: #fafbfc; }
td.text { max-width: 560px; overflow-wrap: anywhere; font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
          font-size: 12.5px; }
span.part { white-space: nowrap; }
p.note { color: var(--muted); font-size: 13px; margin: 2px 0; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(520px, 1fr)); gap: 14px; }
figure { margin: 0; border: 1px solid var(--line); padding: 8px; background: #fff; }
figure img { width: 100%; height: auto; display: block; }
figcaption { font-size: 13px; color: var(--muted); margin-top: 4px; }
details.run { border: 1px solid var(--line); border-radius: 4px; margin: 6px 0; background: #fff; }
details.run > summary { cursor: pointer; padding: 6px 10px; background: var(--band); }
details.run[open] > summary { border-bottom: 1px solid var(--line); }
details.run > div { padding: 4px 12px 10px; }
details.config > summary { cursor: pointer; color: var(--muted); font-size: 13px; }
pre { white-space: pre-wrap; overflow-wrap: anywhere; margin: 4px 0; font: 12.5px/1.4 ui-monospace, SFMono-Regular,
      Menlo, Consolas, monospace; }
pre.prompt { max-height: 22em; overflow: auto; background: var(--band); border: 1px solid var(--line); padding: 6px 8px; }
td pre { max-height: 12em; overflow: auto; }
.muted { color: var(--muted); }
.state-COMPLETE { color: #1d7a3a; } .state-INVALID, .state-FAILED { color: #b3261e; } .state-DUPLICATE { color: #8a6d00; }
"""

#: Nothing is loaded and nothing runs: images are data: URIs and the style is inline.
CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'"


def esc(value: Any) -> str:
    """Text for HTML, quotes included (every value the page shows goes through here)."""
    return html.escape("" if value is None else str(value), quote=True)


def table_html(rows: Sequence[Sequence[Any]], header: bool = True, text_columns: Iterable[int] = ()) -> str:
    """An HTML table of rows of cells (the first row the header unless ``header`` is False);
    ``text_columns``: columns of free text (solutions, replies), set in a monospace font."""
    if not rows:
        return ""
    wide = set(text_columns)
    head, body = (rows[0], rows[1:]) if header else (None, rows)
    out = ['<div class="scroll"><table>']
    if head is not None:
        out.append("<thead><tr>" + "".join(f'<th scope="col">{esc(c)}</th>' for c in head) + "</tr></thead>")
    out.append("<tbody>")
    for row in body:
        out.append("<tr>" + "".join(f'<td class="text">{esc(c)}</td>' if i in wide else f"<td>{_cell(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def _cell(value: Any) -> str:
    """A table cell that breaks between its parts, not inside them: ``58.3 [56.3, 60.2] (54.3 to 62.2)``
    breaks before the bracket and the parenthesis (words outside brackets still wrap as words)."""
    parts = re.split(r" (?=[\[(])", "" if value is None else str(value))
    if len(parts) == 1:
        return esc(parts[0])
    return " ".join(f'<span class="part">{esc(p)}</span>' if p[:1] in "[(" or " " not in p else esc(p) for p in parts)


# --- which stored run is each outcome's --------------------------------------------------------

def _fingerprint(trials: Iterable[Any]) -> list[tuple[int, str, str | None]]:
    out = []
    for t in trials:
        number, state, text = (t["number"], t["state"], t["text"]) if isinstance(t, dict) else (t.number, t.state, t.text)
        out.append((int(number), getattr(state, "value", state), text))
    return out


def stored_runs(collected: Collected, store: RunStore) -> list[RunRecord | None]:
    """Each outcome's run in ``store`` (None: not run, or not found), in the order of
    ``collected.outcomes``. Candidates are the run named ``cell.name`` (a grid's cell), then the runs
    of the same problem and seed; the first whose stored trials are the outcome's is taken, else the
    first whose trials begin with them (a run still being written elsewhere has more), else the named
    run. No run is given to two outcomes."""
    runs = store.runs()
    prints: dict[int, list[tuple[int, str, str | None]]] = {}
    used: set[int] = set()
    out: list[RunRecord | None] = []
    for outcome in collected.outcomes:
        found = None
        if outcome.record is not None and outcome.record.id not in used:
            found = store.find_run(outcome.record.name)  # the outcome knows its run; its status as of now
        elif outcome.result is not None:
            mine = _fingerprint(outcome.result.history)
            named = store.find_run(outcome.cell.name)
            candidates = ([named] if named is not None else []) + [
                r for r in runs if r.problem == outcome.cell.command and int(r.config.get("seed", 0)) == outcome.cell.seed]
            for run in candidates:
                if run.id not in prints:
                    prints[run.id] = _fingerprint(store.records("trials", run.id))
            free = [r for r in candidates if r.id not in used]
            # the same trials first; then a run that has gone on since (two runs that differ only in
            # budget share their first trials: the longer must not take the shorter's place)
            found = next((r for r in free if prints[r.id] == mine), None) or next(
                (r for r in free if prints[r.id][:len(mine)] == mine), None)
            if found is None and named is not None and named.id not in used:
                found = named  # a grid's cell names its run: trust the name when the trials cannot say
        if found is not None:
            used.add(found.id)
        out.append(found)
    return out


# --- the page's parts --------------------------------------------------------------------------

def _version() -> str:
    try:
        return importlib.metadata.version("llmopt")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.6g}"


def _header(collected: Collected, store: RunStore, runs: list[RunRecord | None], title: str,
            generated: datetime) -> str:
    grid = collected.grid
    source = grid.source if grid.source != str(store.path) else "the runs of a store"
    made_with = sorted({str(r.versions.get("llmopt")) for r in runs if r is not None and r.versions.get("llmopt")})
    found = sum(1 for r in runs if r is not None)
    planned = len(collected.outcomes)
    facts = [
        ("compared", f"{grid.name} ({source})"),
        ("store", str(store.path)),
        ("problems", ", ".join(grid.problems)),
        ("configurations", ", ".join(grid.configs)),
        ("seeds", ", ".join(map(str, grid.seeds))),
        ("runs", f"{found} in the store" + (f" of {planned} planned" if found != planned else "")),
        ("generated", generated.strftime("%Y-%m-%d %H:%M:%S %Z").strip()),
        ("llmopt", _version() + (f" (runs made with {', '.join(made_with)})" if made_with else "")),
    ]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in facts)
    toc = "".join(f'<a href="#problem-{i}">{esc(label)}</a>' for i, label in enumerate(_problems(collected)))
    return (f'<header class="top"><h1>{esc(title)}</h1><dl class="facts">{dl}</dl></header>'
            f'<nav class="toc">problems: {toc}</nav>')


def _problems(collected: Collected) -> list[str]:
    """Problem labels with at least one run, in the grid's order."""
    return [label for label in collected.grid.problems
            if any(o.cell.problem == label and o.result is not None for o in collected.outcomes)]


def _figures(collected: Collected, label: str, x_axes: Sequence[str]) -> str:
    """The problem's figures (the PNGs write_figures makes of this problem's outcomes alone), embedded."""
    only = replace(collected, outcomes=[o for o in collected.outcomes if o.cell.problem == label],
                   references={label: collected.references.get(label, {})})
    parts = []
    with tempfile.TemporaryDirectory(prefix="llmopt-report-") as folder:
        for path in write_figures(only, folder, x_axes, formats=("png",)):
            path = Path(path)
            if path.suffix.lower() != ".png":
                continue
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            parts.append(f'<figure><img src="data:image/png;base64,{data}" alt="{esc(f"{label}: {path.stem}")}">'
                         f"<figcaption>{esc(path.stem)}</figcaption></figure>")
    return f'<div class="figures">{"".join(parts)}</div>' if parts else '<p class="muted">no figures</p>'


def _status(run: RunRecord | None, store: RunStore) -> str:
    if run is None:
        return "not run"
    return run.stop_reason or store.run_status(run)


def _best_solutions(outcomes: list[tuple[Outcome, RunRecord | None]], store: RunStore) -> str:
    parts = []
    for config in dict.fromkeys(o.cell.config for o, _ in outcomes):
        rows: list[list[Any]] = [["seed", "run", "status", "best", "step", "solution"]]
        for outcome, run in sorted(((o, r) for o, r in outcomes if o.cell.config == config), key=lambda p: p[0].cell.seed):
            best = outcome.result.best if outcome.result is not None else None
            rows.append([outcome.cell.seed, run.name if run is not None else outcome.cell.name, _status(run, store),
                         _number(None if best is None else best.value), "-" if best is None else best.step,
                         "-" if best is None else (best.text if best.text and best.text.strip() else json.dumps(best.text))])
        parts.append(f"<h4>{esc(config)}</h4>" + table_html(rows, text_columns=[5]))
    return "".join(parts)


def _reply_cell(trial: dict[str, Any]) -> str:
    parts = []
    if trial.get("raw") is not None:
        parts.append(f"<pre>{esc(trial['raw'])}</pre>")
    if trial.get("error"):
        parts.append(f'<div class="state-FAILED">{esc(trial["error"])}</div>')
    return "".join(parts) or '<span class="muted">-</span>'


def lineage_html(trials: list[dict[str, Any]], best: int) -> str:
    """The best solution in full and its lineage, each ancestor's diff to its child, for solutions
    that span lines (a program's); "" for one-line solutions or a best without parents."""
    by_number = {t["number"]: t for t in trials}
    chain, number = [], best
    while number in by_number and number not in chain and len(chain) < 50:
        chain.append(number)
        parents = json.loads(by_number[number].get("parents") or "[]")
        number = parents[0] if parents else None
    text = by_number.get(best, {}).get("text") or ""
    if "\n" not in text.strip() or len(chain) < 2:
        return ""
    steps = []
    for child, parent in zip(chain, chain[1:]):
        change = diff(by_number[parent]["text"] or "", by_number[child]["text"] or "",
                      names=(f"#{parent}", f"#{child}"))
        value = _number(by_number[child]["value"])
        steps.append(f'<details><summary>#{parent} &rarr; #{child} (value {esc(value)})</summary>'
                     f'<pre class="diff">{esc(change or "(no change)")}</pre></details>')
    lineage = " &larr; ".join(f"#{n}" for n in chain)
    return (f'<div class="lineage"><h5>best solution #{best} in full</h5><pre class="prompt">{esc(text)}</pre>'
            f'<p class="muted">lineage: {lineage}</p>{"".join(steps)}</div>')


def _run_details(index: int, outcome: Outcome, run: RunRecord, store: RunStore) -> str:
    """One run's closed <details>: per step its meta-prompt (each distinct prompt once) and trials (with
    their parents and each call's own prompt, for an evolutionary proposer's run)."""
    steps = {s["step"]: s for s in store.records("steps", run.id)}
    trials = store.records("trials", run.id)
    by_step: dict[int, list[dict[str, Any]]] = {}
    for t in trials:
        by_step.setdefault(t["step"], []).append(t)
    usage = store.usage(run.id)
    own = {c.number: c.prompt for c in store.calls(run.id, role="optimizer") if c.prompt is not None}
    counts = Counter(t["state"] for t in trials)
    best = outcome.result.best if outcome.result is not None else None
    summary = (f"<b>{esc(run.name)}</b> <span class=\"muted\">{esc(outcome.cell.config)} · seed {outcome.cell.seed} · "
               f"{esc(_status(run, store))} · best {esc(_number(None if best is None else best.value))} · "
               f"{len(trials)} trials ({esc(', '.join(f'{n} {s.lower()}' for s, n in sorted(counts.items())))}) · "
               f"{usage.calls} LLM calls, {usage.tokens} tokens</span>")
    body = [f'<p class="muted">stopped by {esc(_status(run, store))}: {esc(run.stop_detail or "")}</p>',
            f'<details class="config"><summary>recorded configuration</summary>'
            f"<pre>{esc(json.dumps(run.config, indent=1, sort_keys=True))}</pre></details>"]
    if best is not None:
        body.append(lineage_html(trials, best.number))
    first_step_of: dict[str, int] = {}
    for step in sorted(set(steps) | set(by_step)):
        prompt = steps.get(step, {}).get("prompt")
        body.append(f"<h5>step {step}</h5>")
        if prompt is not None:
            if prompt in first_step_of:
                body.append(f'<p class="muted">meta-prompt: the same as step {first_step_of[prompt]}\'s</p>')
            else:
                first_step_of[prompt] = step
                body.append(f'<div class="muted">meta-prompt ({len(prompt)} characters)</div>'
                            f'<pre class="prompt">{esc(prompt)}</pre>')
        mine = by_step.get(step, [])
        if not mine:
            continue
        bred = any(t.get("parents") for t in mine)  # an evolutionary run: parents and each call's own prompt
        heads = ("#", "state", "source", "value", "solution") + (("parents",) if bred else ()) + ("reply / error",)
        rows = ["<tr>" + "".join(f'<th scope="col">{h}</th>' for h in heads) + "</tr>"]
        for t in mine:
            parents = ", ".join(f"#{n}" for n in json.loads(t.get("parents") or "[]"))
            asked = own.get(t["number"])
            asked_cell = ("" if asked is None else f'<details><summary>its prompt</summary>'
                          f'<pre class="prompt">{esc(asked)}</pre></details>')
            rows.append(f'<tr><td>{t["number"]}</td><td class="state-{esc(t["state"])}">{esc(t["state"])}</td>'
                        f'<td>{esc(t["source"])}</td><td>{esc(_number(t["value"]))}</td>'
                        f'<td class="text">{esc(t["text"] if t["text"] is not None else "-")}</td>'
                        + (f"<td>{esc(parents or '-')}</td>" if bred else "")
                        + f'<td class="text">{asked_cell}{_reply_cell(t)}</td></tr>')
        body.append(f'<div class="scroll"><table class="trials"><thead>{rows[0]}</thead>'
                    f'<tbody>{"".join(rows[1:])}</tbody></table></div>')
    return (f'<details class="run" id="run-{index}"><summary>{summary}</summary>'
            f'<div>{"".join(body)}</div></details>')


def report_html(collected: Collected, store: RunStore, *, options: TableOptions = TableOptions(),
                x_axes: Sequence[str] = ("step", "evals"), title: str | None = None,
                generated: datetime | None = None) -> str:
    """The whole page, as text: a header (what was compared, when, with which llmopt), then per
    problem its comparison table and notes (``options`` as ``llmopt compare`` takes them), its
    figures (``x_axes`` as ``llmopt plot --x``), each configuration's best solution per seed, and
    every run's meta-prompts and replies one click away. ``store``: the open store the outcomes
    were read from (only read)."""
    generated = generated or datetime.now(timezone.utc)
    title = title or f"llmopt report: {collected.grid.name}"
    runs = stored_runs(collected, store)
    computed = tables(collected, options)
    sections = []
    for i, label in enumerate(_problems(collected)):
        pairs = [(o, r) for o, r in zip(collected.outcomes, runs) if o.cell.problem == label]
        commands = sorted({o.cell.command for o, _ in pairs})
        seeds = sorted({o.cell.seed for o, _ in pairs if o.result is not None})
        table = computed.get(label)
        notes = "".join(f'<p class="note">{esc(n)}</p>' for n in getattr(table, "notes", None) or [])
        order = {c: k for k, c in enumerate(collected.grid.configs)}  # runs by configuration, then seed
        mine = sorted(((j, o, r) for j, (o, r) in enumerate(zip(collected.outcomes, runs))
                       if o.cell.problem == label and r is not None),
                      key=lambda item: (order.get(item[1].cell.config, len(order)), item[1].cell.seed, item[0]))
        details = "".join(_run_details(j, o, r, store) for j, o, r in mine)
        missing = sum(1 for o, r in pairs if o.result is not None and r is None)
        sections.append(
            f'<section id="problem-{i}"><h2>{esc(label)}</h2>'
            f'<p class="muted">llmopt run {esc(", ".join(commands))}; seeds with runs: {esc(", ".join(map(str, seeds)))}</p>'
            f"<h3>Comparison</h3>{table_html(table) if table else '<p class=muted>no table</p>'}{notes}"
            f"<h3>Figures</h3>{_figures(collected, label, x_axes)}"
            f"<h3>Best solutions</h3>{_best_solutions(pairs, store)}"
            f"<h3>Runs: meta-prompts and replies</h3>"
            + (f'<p class="muted">{missing} run(s) not found in the store</p>' if missing else "")
            + f"{details}</section>")
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{STYLE}</style></head>"
            f'<body><main>{_header(collected, store, runs, title, generated)}{"".join(sections)}</main></body></html>\n')
