"""A recognisable fake API key, sent through the whole pipeline, is never written anywhere:
not in the store, its cache, any output, or any exported file."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

from datadir import data_dir
from fakes import linreg_script
from openai_server import OpenAIServer

from llmopt import RunStore

KEY = "sk-LLMOPT-CANARY-7f3a9b1c2d4e5f60718293a4b5c6d7e8"
ROOT = Path(__file__).resolve().parents[1]
DATA = str(data_dir())  # $LLMOPT_DATA, else the copy shipped with the package


def script(prompt: str, seed: int) -> str:
    if "generate the instruction <INS>" in prompt:
        return "<INS>Answer with yes or no.</INS>"
    if "Options:" in prompt:
        return "Yes"
    return linreg_script(prompt, seed)


def test_the_key_never_reaches_store_cache_or_output(tmp_path: Path) -> None:
    store = tmp_path / "runs.db"
    turn = itertools.count()
    env = dict(os.environ, CANARY_KEY=KEY)
    outputs = []
    # Every fourth request fails with an error that repeats the Authorization header, so the
    # key also passes through litellm's exceptions, the FAILED trials' errors and the summary.
    with OpenAIServer(script, plan=lambda i: "leak" if next(turn) % 4 == 0 else None) as server:
        http = ["--api-base", server.api_base, "--api-key-env", "CANARY_KEY", "--num-retries", "1"]
        commands = [
            ["run", "linreg", "--model", "openai/m", *http, "--steps", "3", "--structured", "off"],
            ["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "4", "--steps", "1",
             "--proposals", "2", "--model", "openai/m", *http, "--structured", "off", "--scorer", "openai/s",
             "--scorer-api-base", server.api_base, "--scorer-api-key-env", "CANARY_KEY", "--scorer-num-retries", "0"],
            ["show"], ["show", "linreg-llm-seed0"],
            *[["export", "--table", t, "--format", f, "--out", str(tmp_path / f"export-{t}.{f}")]
              for t in ("trials", "calls", "steps", "runs") for f in ("csv", "jsonl")],
            ["evaluate", "--run", "prompt-llm-seed0", "--data-dir", DATA, "--max-examples", "4", "--scorer",
             "openai/s", "--scorer-api-base", server.api_base, "--scorer-api-key-env", "CANARY_KEY"],
        ]
        for argv in commands:
            done = subprocess.run([sys.executable, "-m", "llmopt.cli", *argv, "--store", str(store)], env=env,
                                  capture_output=True, text=True, timeout=300, cwd=ROOT)
            # a round whose every call hit a 'leak' stops the run by llm_failure, and a prompt run whose
            # every scoring met one (the scorer has no retries; which requests leak depends on the order
            # they arrive in) fails with 'every evaluation failed': both exit 1, by design
            failed_by_design = "stopped by llm_failure" in done.stderr or "every evaluation failed" in done.stderr
            assert done.returncode == 0 or (done.returncode == 1 and failed_by_design), done.stderr
            outputs.append(done.stdout + done.stderr)
        assert any({k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {KEY}"
                   for h in server.headers)  # the key was really sent
        assert server.injected["leak"] > 0
    with RunStore(store) as s:
        errors = [t.error for run in s.runs() for t in s.trials(run.id) if t.error]
    assert any("***" in e for e in errors)  # the leaked header reached an error, scrubbed
    for out in outputs:
        assert KEY not in out
    files = [f for f in tmp_path.rglob("*") if f.is_file()]  # the store's run locks too (.llmopt-locks/runs.db/)
    assert any(f.name == "runs.db" for f in files) and len([f for f in files if f.name.startswith("export-")]) == 8
    for f in files:
        assert KEY.encode() not in f.read_bytes(), f
