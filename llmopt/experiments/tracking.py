"""Experiment tracking in MLflow: ``--mlflow URI`` (``mlflow=`` in Python) logs a run where
researchers already look, beside the store (which stays the record of truth).

One llmopt run is one MLflow run: experiment = the problem (or ``--mlflow-experiment``), run name =
the llmopt run's name; its recorded config flattened into parameters (values cut at MLflow's
500 characters; the whole config as the artifact ``config.json``); tags saying what ran and where
its trials are (``llmopt.store``, ``llmopt.run_name``, ``llmopt.run_id``); one metric point per
finished step (``step=`` the llmopt step): best so far, evaluations, calls, tokens and dollars as
the optimizer accounts them; at the end the stop reason, ``best.txt``, ``report.md`` (the
``llmopt show`` tables) and a status FINISHED / FAILED / KILLED that says how the run stopped.

A resumed run continues its MLflow run (found by its store and name) and logs only the steps not
logged before. MLflow is imported only when tracking is asked for, and a tracking failure in the
middle of a run (a server gone) is said once on stderr and never stops the run.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from llmopt.budget import StopReason
from llmopt.experiments.report import markdown_table, proposer_name, run_summary, steps_table, validations_report
from llmopt.history import TrialState
from llmopt.llm.usage import Usage
from llmopt.optimizer import CallEvent, Optimizer, RunResult
from llmopt.problem import Direction
from llmopt.store import is_url

MISSING = '--mlflow needs MLflow: pip install "llmopt[mlflow]"'
PARAM_LIMIT = 500  # MLflow's historical limit on a parameter's value (newer servers take more; old ones refuse)
TAG_LIMIT = 5000
#: MLflow's settings for llmopt's own requests, unless the user set them: a server that is gone is
#: given up on in seconds, not after MLflow's default 7 retries (4 minutes measured against a closed
#: port); MLflow 3 keeps its directory store for those who opt in, and naming a directory is that.
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}
FILE_STORE_OPT_IN = {"MLFLOW_ALLOW_FILE_STORE": "true"}
_KEY_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-. /:")


@dataclass(frozen=True)
class Tracking:
    """Where a run is logged: an MLflow tracking URI (``file:///path/mlruns``, a plain directory,
    ``sqlite:///mlflow.db``, ``http://host:5000``), the experiment (None: the problem's name), and
    extra tags (a grid cell's: the grid and the cell)."""

    uri: str
    experiment: str | None = None
    tags: tuple[tuple[str, str], ...] = ()

    def experiment_for(self, problem: str) -> str:
        return self.experiment or problem


def tracking_of(args: Any) -> Tracking | None:
    """The tracking a parsed ``llmopt run`` asks for (``--mlflow``, ``--mlflow-experiment``, and the
    tags a grid gives its cells), or None."""
    uri = getattr(args, "mlflow", None)
    if not uri:
        return None
    tags = tuple(sorted((getattr(args, "mlflow_tags", None) or {}).items()))
    return Tracking(uri, getattr(args, "mlflow_experiment", None), tags)


def resolved_uri(uri: str) -> str:
    """A plain directory as a ``file://`` URI (absolute: a later ``cd`` changes nothing)."""
    if "://" not in uri and not uri.startswith("sqlite:"):
        uri = "file://" + os.path.abspath(uri)
    return uri


@contextlib.contextmanager
def mlflow_settings(uri: str) -> Iterator[None]:
    """:data:`HTTP_DEFAULTS` (and, for a directory store, :data:`FILE_STORE_OPT_IN`) in the
    environment while llmopt talks to MLflow (MLflow reads them per request), the user's own
    values kept; the process's environment is as it was afterwards."""
    wanted = {**HTTP_DEFAULTS, **(FILE_STORE_OPT_IN if resolved_uri(uri).startswith("file:") else {})}
    added = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def client_for(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` (no global tracking URI or active run is set); ImportError
    with the install line when MLflow is not installed."""
    try:
        from mlflow.tracking import MlflowClient
    except ImportError:
        raise ImportError(MISSING) from None
    try:
        return MlflowClient(tracking_uri=resolved_uri(uri))
    except Exception as exc:  # a scheme MLflow does not know
        raise ValueError(f"--mlflow {uri}: {_one_line(exc)}") from None


def check(tracking: Tracking, problem: str) -> None:
    """Before anything is created or spent: MLflow is installed (ImportError, :data:`MISSING`) and
    the tracking URI takes the experiment (ValueError, one line)."""
    with mlflow_settings(tracking.uri):
        client = client_for(tracking.uri)  # ImportError: the install line
        try:
            experiment_id(client, tracking.experiment_for(problem))
        except Exception as exc:  # a bad URI, an unreachable server: MLflow's own words, on one line
            raise ValueError(f"--mlflow {tracking.uri}: {_one_line(exc)}") from None


def experiment_id(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    return found.experiment_id if found is not None else client.create_experiment(name)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def flatten(config: Any, prefix: str = "") -> dict[str, str]:
    """A recorded config as MLflow parameters: nested keys joined with ``.``, lists as JSON, values
    cut at :data:`PARAM_LIMIT` characters (the whole config goes to ``config.json``)."""
    if isinstance(config, dict) and config:
        out: dict[str, str] = {}
        for key, value in config.items():
            out.update(flatten(value, f"{prefix}{_key(str(key))}."))
        return out
    text = config if isinstance(config, str) else json.dumps(config, default=str)
    return {prefix[:-1][:250]: text if len(text) <= PARAM_LIMIT else text[:PARAM_LIMIT - 3] + "..."}


def _key(text: str) -> str:
    return "".join(c if c in _KEY_CHARS else "_" for c in text) or "_"


def _store_location(opt: Optimizer) -> str:
    """Where the run's trials are: a SQLite store's path (absolute) or a PostgreSQL store's URL (no password)."""
    path = getattr(opt.store, "path", None)
    if path is None:
        return "(no store)"
    return str(path) if is_url(path) else os.path.abspath(os.fspath(path))


def _version() -> str:
    try:
        return importlib.metadata.version("llmopt")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed)"


def run_tags(opt: Optimizer, tracking: Tracking) -> dict[str, str]:
    """What ran and where its trials are, as MLflow tags."""
    config = opt.config()
    model = config.get("proposer", {}).get("llm", {}).get("model")
    record = opt.run_record
    tags = {"llmopt.version": _version(), "llmopt.problem": opt.problem.name, "llmopt.proposer": proposer_name(config),
            "llmopt.seed": str(opt.seed), "llmopt.store": _store_location(opt), "llmopt.run_name": opt.name or "",
            "llmopt.run_id": "" if record is None else str(record.id), **dict(tracking.tags)}
    if record is not None:  # with the store and the id: this run, not an earlier one of a store made again
        tags["llmopt.run_created"] = repr(record.created)
    if model:
        tags["llmopt.model"] = str(model)
    if opt.command:
        tags["llmopt.command"] = opt.command[:TAG_LIMIT]
    return tags


def status_of(result: RunResult | None) -> str:
    """MLflow's status for how the run stopped: KILLED (interrupted), FAILED (an error, the model
    failing, or nothing scorable: where ``llmopt run`` exits non-zero), else FINISHED."""
    if result is None or result.stop_reason is StopReason.LLM_FAILURE:
        return "FAILED"
    if result.stop_reason is StopReason.INTERRUPTED:
        return "KILLED"
    if result.evaluations == 0 and result.counts.get(TrialState.FAILED.value, 0):
        return "FAILED"
    return "FINISHED"


def report_markdown(opt: Optimizer, result: RunResult) -> str:
    """The run's ``llmopt show``-style report in Markdown: the summary ``llmopt run`` prints, then
    (with a store) the steps table and the validations."""
    parts = [f"# {result.name or 'run'}", "", markdown_table([["", ""], *run_summary(result, opt.problem)])]
    store, record = opt.store, opt.run_record
    if store is not None and record is not None:
        parts += ["", "## steps", "", markdown_table(steps_table(store, record))]
        validated = validations_report(store, record)
        if validated:
            parts += ["", "## validation", "", "```", validated, "```"]
    return "\n".join(parts) + "\n"


class RunTracker:
    """One llmopt run logged to one MLflow run (see the module docstring). Every MLflow call goes
    through :meth:`_safely`: the first failure is said once on stderr and ends the logging, never
    the run."""

    def __init__(self, client: Any, tracking: Tracking, warn: Callable[[str], None]) -> None:
        self.client, self.tracking, self.warn = client, tracking, warn
        self.run_id: str | None = None
        self.logged = -1  # the last step logged
        self.broken = False
        self._base: Usage = Usage()  # the optimizer's usage when tracking began
        self._base_step = 0
        self._by_step: dict[int, Usage] = {}  # usage of the calls accounted since, by step
        self._before: dict[int, Usage] | None = None  # a resumed run's earlier steps, as its store accounts them

    # --- start ------------------------------------------------------------------------------
    def start(self, opt: Optimizer) -> None:
        """Find the run's MLflow run (a resume) or create it; log what it is; listen to its calls."""
        self._base, self._base_step = opt.usage, opt.step
        self._safely(lambda: self._open(opt))
        if not self.broken:
            opt.register_callback("call", self._on_call)

    def _open(self, opt: Optimizer) -> None:
        tags = run_tags(opt, self.tracking)
        eid = experiment_id(self.client, self.tracking.experiment_for(opt.problem.name))
        found = self._find(eid, tags)
        if found is None:
            self.run_id = self.client.create_run(eid, run_name=opt.name or None, tags=tags).info.run_id
            logged_params: dict[str, str] = {}
        else:
            self.run_id = found.info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
            logged_params = dict(found.data.params)
            self.logged = self._last_logged_step()
        if self.logged < opt.step - 1:  # steps before this session's to log (tracking failed, or begins now)
            self._before = self._stored_usage(opt)
        self._log_params(flatten(opt.config()), logged_params)
        self.client.log_text(self.run_id, json.dumps(opt.config(), indent=2, default=str), "config.json")

    def _find(self, eid: str, tags: dict[str, str]) -> Any:
        """The MLflow run of this llmopt run (same store, run name, id in the store and creation
        time), or None (a new run, or a run without a store, which cannot be resumed)."""
        if "llmopt.run_created" not in tags or not tags["llmopt.run_name"]:
            return None
        keys = ("llmopt.store", "llmopt.run_name", "llmopt.run_id", "llmopt.run_created")
        query = " and ".join(f"tags.`{k}` = '{_quoted(tags[k])}'" for k in keys)
        runs = self.client.search_runs([eid], filter_string=query, max_results=1)
        return runs[0] if runs else None

    def _last_logged_step(self) -> int:
        history = self.client.get_metric_history(self.run_id, "evaluations")
        return max((m.step for m in history), default=-1)

    def _log_params(self, params: dict[str, str], logged: dict[str, str]) -> None:
        """The config's parameters not logged before (MLflow refuses to change one: a resumed run
        whose budget grew keeps the first value as a parameter; ``config.json`` is rewritten)."""
        from mlflow.entities import Param

        new = [Param(k, v) for k, v in params.items() if k not in logged]
        for i in range(0, len(new), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=new[i:i + 100])

    @staticmethod
    def _stored_usage(opt: Optimizer) -> dict[int, Usage] | None:
        """Each earlier step's usage as the store accounts it (calls of recorded trials), for the
        steps a resumed run logs late (tracking failed, or began with this resume)."""
        store, record = opt.store, opt.run_record
        if store is None or record is None:
            return None
        recorded = {t.number for t in opt.history}
        out: dict[int, Usage] = {}
        for call in store.calls(record.id):
            if call.number in recorded and call.step < opt.step:
                out[call.step] = out.get(call.step, Usage()).add(call.completion())
        return out

    # --- steps ------------------------------------------------------------------------------
    def _on_call(self, opt: Optimizer, event: CallEvent) -> None:
        self._by_step[event.step] = self._by_step.get(event.step, Usage()).add(event.completion)

    def on_step(self, opt: Optimizer) -> None:
        """After a step: every finished step not logged yet, one point each."""
        self.flush(opt, opt.step)

    def flush(self, opt: Optimizer, last: int) -> None:
        if self.broken or self.run_id is None or last <= self.logged:
            return
        self._safely(lambda: self._log_steps(opt, range(self.logged + 1, last + 1)))

    def _log_steps(self, opt: Optimizer, steps: range) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(name, value, now, step) for step, point in self._points(opt, steps)
                   for name, value in point.items()]
        for i in range(0, len(metrics), 1000):  # MLflow's batch limit
            self.client.log_batch(self.run_id, metrics=metrics[i:i + 1000])
        self.logged = steps[-1]

    def _points(self, opt: Optimizer, steps: range) -> Iterator[tuple[int, dict[str, float]]]:
        """(step, metrics after it) for each of ``steps``: cumulative counts, best so far."""
        trials = sorted((t for t in opt.history if t.ok), key=lambda t: t.step)
        better = min if opt.problem.direction is Direction.MINIMIZE else max
        best: float | None = None
        i = 0
        for step in steps:
            while i < len(trials) and trials[i].step <= step:
                best = float(trials[i].value) if best is None else better(best, float(trials[i].value))  # type: ignore[arg-type]
                i += 1
            used = self._usage_after(step)
            point = {"evaluations": float(i), "calls": float(used.calls), "prompt_tokens": float(used.prompt_tokens),
                     "completion_tokens": float(used.completion_tokens), "usd": used.cost_usd}
            if best is not None:
                point["best_so_far"] = best
            yield step, point

    def _usage_after(self, step: int) -> Usage:
        """The usage accounted up to the end of ``step``: the optimizer's at the start of tracking
        plus the calls since (earlier steps of a resumed run: as its store accounts them)."""
        if step < self._base_step and self._before is not None:
            return _sum(u for s, u in self._before.items() if s <= step)
        return _sum([self._base, *(u for s, u in self._by_step.items() if s <= step)])

    # --- the end ----------------------------------------------------------------------------
    def finish(self, opt: Optimizer, result: RunResult | None, error: BaseException | None = None) -> None:
        """The last finished steps, the stop reason, ``best.txt``, ``report.md`` and the status."""
        if self.broken or self.run_id is None:
            return
        self.flush(opt, opt.step if self._step_finished(opt) else opt.step - 1)
        self._safely(lambda: self._log_end(opt, result, error))

    @staticmethod
    def _step_finished(opt: Optimizer) -> bool:
        """Whether the optimizer's current step is finished (a stored run says; an interrupted run
        without a store cannot be resumed, so its last step is logged as it is)."""
        store, record = opt.store, opt.run_record
        if store is None or record is None:
            return True
        try:
            steps = [s for s in store.steps(record.id) if s.step == opt.step]
        except Exception:  # a store that failed (the run's own error, being raised): the step is left to a resume
            return False
        return bool(steps) and steps[-1].finished

    def _log_end(self, opt: Optimizer, result: RunResult | None, error: BaseException | None) -> None:
        from mlflow.entities import RunTag

        reason = "error" if result is None else result.stop_reason.value
        detail = _one_line(error) if result is None and error is not None else (result.stop_detail if result else "")
        self.client.log_batch(self.run_id, tags=[RunTag("llmopt.stop_reason", reason),
                                                 RunTag("llmopt.stop_detail", detail[:TAG_LIMIT])])
        if result is not None:
            if result.best is not None and result.best.text is not None:
                self.client.log_text(self.run_id, result.best.text, "best.txt")
            if result.chosen is not None and result.validations and result.chosen.text is not None:
                self.client.log_text(self.run_id, result.chosen.text, "chosen.txt")
            self.client.log_text(self.run_id, report_markdown(opt, result), "report.md")
        self.client.set_terminated(self.run_id, status_of(result))

    def _safely(self, action: Callable[[], None]) -> None:
        if self.broken:
            return
        try:
            with mlflow_settings(self.tracking.uri):
                action()
        except Exception as exc:  # the store is the record: tracking never stops a run
            self.broken = True
            self.warn(f"llmopt: warning: MLflow tracking ({self.tracking.uri}) failed and stops for this run; "
                      f"the run goes on (its store keeps every trial; --resume logs the missing steps): "
                      f"{_one_line(exc)}")


def _sum(usages: Any) -> Usage:
    total = Usage()
    for u in usages:
        total = Usage(calls=total.calls + u.calls, prompt_tokens=total.prompt_tokens + u.prompt_tokens,
                      completion_tokens=total.completion_tokens + u.completion_tokens,
                      cost_usd=total.cost_usd + u.cost_usd)
    return total


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace("'", "\\'")


def _stderr(line: str) -> None:
    print(line, file=sys.stderr)


def run_tracked(opt: Optimizer, tracking: Tracking | None, run: Callable[[Callable[[Optimizer], None]], RunResult],
                on_step: Callable[[Optimizer], None], warn: Callable[[str], None] = _stderr) -> RunResult:
    """``run(on_step)`` (the optimizer's loop, as the caller starts it), logged to MLflow when
    ``tracking`` is given: each step after ``on_step``, the end whatever way the run ends."""
    if tracking is None:
        return run(on_step)
    with mlflow_settings(tracking.uri):
        client = client_for(tracking.uri)
    tracker = RunTracker(client, tracking, warn)
    tracker.start(opt)

    def step(o: Optimizer) -> None:
        on_step(o)
        tracker.on_step(o)

    try:
        result = run(step)
    except BaseException as exc:
        tracker.finish(opt, None, exc)
        raise
    tracker.finish(opt, result)
    return result
