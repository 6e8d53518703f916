"""The suite's fixtures: reference runs, loopback servers, the embedded model, hypothesis profiles.

Plain helpers (run_script, snapshot, spawn, arm_kill, wait_for_trials, assert_one_line_error) are in
tests/harness.py, the parity toy task in tests/toys.py, scripted models in tests/fakes.py; no test
module imports another. Expensive things are made once: the embedded model is loaded once per
session (``embedded_model``), each reference run once per session and options (``reference_run``).

Hypothesis profiles (``HYPOTHESIS_PROFILE``, default ``ci``): ``ci`` has no deadline (a loaded
2-core machine is not a failing test) and no example database (nothing written into the checkout);
``dev`` caps the tests that do not set their own count at 20 examples, for a quick local loop.

Tiers: the README's command runs everything (CI). ``-m "not slow"`` is a quick tier for
developers: it leaves out the tests marked ``slow`` (by hand, or here for using the embedded
model, llama.cpp's server or child-process reference runs).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(__file__))  # tests/harness.py, fakes.py, toys.py ...
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from harness import FAKE_RUN, run_script, snapshot  # noqa: E402
from pg_server import pg_server, pg_url  # noqa: E402, F401  (fixtures: one PostgreSQL server per worker)

settings.register_profile("ci", deadline=None, database=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", parent=settings.get_profile("ci"), max_examples=20)
settings.register_profile("deep", parent=settings.get_profile("ci"), max_examples=1000)  # a longer hunt
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

#: the environment variable the loopback servers' fake API key is read from
KEY_ENV = "LLMOPT_TEST_FAKE_KEY"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--live", action="store_true", help="run tests that call hosted models (needs API keys)")


#: a test that uses one of these is slow (the quick tier, ``-m "not slow"``, leaves it out)
SLOW_FIXTURES = frozenset({"embedded_model", "llama_server", "reference_run"})
#: the tests of the embedded model share one worker under pytest-xdist (one model load a session)
MODEL_FIXTURES = frozenset({"embedded_model", "llama_server"})
#: Modules kept on one xdist worker (``--dist loadgroup``), by group: those whose module-scoped fixtures
#: take seconds (a store made by runs, a report drawn; made once, not once per worker: ~15 s of the
#: suite; MLflow imported once), and the grids on many processes, which share one forkserver per
#: worker (it imports llmopt and litellm once).
ONE_WORKER_GROUPS = {"test_report_html": "report-html", "test_faults": "faults", "test_stored_read": "stored-read",
                     "test_mlflow_tracking": "mlflow", "test_grid_jobs": "grid-workers",
                     "test_many_writers": "grid-workers"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests of the embedded model and of child-process runs slow (and put the model's on
    one xdist worker, with ``--dist loadgroup``); skip live ones unless --live."""
    skip = pytest.mark.skip(reason="live hosted-model test: pass --live (and set the API key) to run")
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if SLOW_FIXTURES & used:
            item.add_marker(pytest.mark.slow)
        module = getattr(getattr(item, "module", None), "__name__", "")
        if MODEL_FIXTURES & used or module == "test_local":
            item.add_marker(pytest.mark.xdist_group("embedded-model"))
        elif module in ONE_WORKER_GROUPS:
            item.add_marker(pytest.mark.xdist_group(ONE_WORKER_GROUPS[module]))
        if "live" in item.keywords and not config.getoption("--live"):
            item.add_marker(skip)
    items.sort(key=run_order)


def run_order(item: pytest.Item) -> int:
    """The embedded model's tests first, then the other slow ones, then the rest (a stable sort:
    collection order within each). Under ``--dist loadgroup`` the model's group (a few minutes on
    one worker) starts at once while the other worker takes the rest, and the last tests handed
    out are short ones, so the two workers finish together instead of one waiting on a long tail."""
    if any(mark.name == "xdist_group" and mark.args == ("embedded-model",) for mark in item.iter_markers()):
        return 0
    return 1 if item.get_closest_marker("slow") else 2


# --- kill and resume ------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def reference_run(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Path, str]]:
    """``reference_run(*options, script=FAKE_RUN)``: the store and stdout of an uninterrupted run of a
    tests/scripts/ script with these options, run once per session (a child process, like the
    killed and resumed runs it is compared with)."""
    made: dict[tuple, tuple[Path, str]] = {}

    def get(*options: str, script: Path = FAKE_RUN) -> tuple[Path, str]:
        key = (str(script), options)
        if key not in made:
            path = tmp_path_factory.mktemp("reference") / "ref.db"
            done = run_script(path, *options, script=script)
            assert done.returncode == 0, done.stderr
            made[key] = (path, done.stdout)
        return made[key]

    return get


@pytest.fixture(scope="session")
def reference(reference_run: Callable[..., tuple[Path, str]]) -> tuple:
    """The snapshot (trials, calls, end) of tests/scripts/fake_run.py's default run."""
    return snapshot(reference_run()[0])


# --- loopback OpenAI-compatible servers -----------------------------------------------------------

@pytest.fixture()
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Any]]:
    """``openai_server(script, **options)`` starts a loopback OpenAI-compatible server
    (tests/openai_server.py) that replies with ``script(prompt, seed)``; every server started is
    stopped after the test. ``$LLMOPT_TEST_FAKE_KEY`` holds a fake key for ``--api-key-env``."""
    from openai_server import OpenAIServer

    monkeypatch.setenv(KEY_ENV, "sk-fake-key-for-loopback-000")
    with contextlib.ExitStack() as servers:
        yield lambda script, **options: servers.enter_context(OpenAIServer(script, **options))


@pytest.fixture()
def linreg_server(openai_server: Callable[..., Any]) -> Any:
    """A loopback server answering linear-regression meta-prompts like a crude optimizer."""
    from fakes import linreg_script

    return openai_server(linreg_script)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server on 127.0.0.1 with the embedded model's weights."""
    import socket
    import subprocess
    import time
    import urllib.request

    from llmopt.llm.embedded import model_path

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cmd = [sys.executable, "-m", "llmopt.llm.embedded_server", "--model", str(model_path("smollm2")), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", "1", "--n_ctx", "2048", "--model_alias", "smollm2"]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    sink = open(log, "wb")  # a pipe would fill with llama.cpp's logging and stall the server
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 90
    while True:
        try:
            with urllib.request.urlopen(f"{base}/models", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            sink.close()
            raise RuntimeError(f"llama_cpp.server did not start: {log.read_text(errors='replace')[-2000:]}")
        time.sleep(0.2)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    sink.close()


# --- the embedded model ---------------------------------------------------------------------------

@pytest.fixture(scope="session")
def embedded_model() -> Any:
    """The embedded model's engine (SmolLM2-135M through llama.cpp), loaded once for the session.

    Every in-process use of ``local/smollm2`` (litellm's provider, ``llmopt run``, the engine
    itself) goes through this one engine; tests that need a fresh process or a fresh load say so."""
    from llmopt.llm import embedded

    eng = embedded.engine("smollm2")
    eng.llama()  # the load, paid here once
    return eng
