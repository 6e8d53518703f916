from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # tests/fakes.py
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--live", action="store_true", help="run tests that call hosted models (needs API keys)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--live"):
        return
    skip = pytest.mark.skip(reason="live hosted-model test: pass --live (and set the API key) to run")
    for item in items:
        if "live" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
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
        time.sleep(0.5)
    yield base
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
    sink.close()

