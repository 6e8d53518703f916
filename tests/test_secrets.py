"""A recognisable fake API key, sent through the whole pipeline, is never written anywhere:
not in the store, its cache, any output, or any exported file."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from datadir import data_dir
from fakes import linreg_script
from openai_server import OpenAIServer

from llmopt import RunStore
from llmopt.cli import main

KEY = "sk-LLMOPT-CANARY-7f3a9b1c2d4e5f60718293a4b5c6d7e8"
ROOT = Path(__file__).resolve().parents[1]
DATA = str(data_dir())  # $LLMOPT_DATA, else the copy shipped with the package


#: runs each command of argv[2] (JSON) as `llmopt` would, then prints "exit CODE" and the mark argv[1]
#: on stdout and the mark on stderr
CHILD = """import json, sys
from llmopt.cli import main
for argv in json.loads(sys.argv[2]):
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    print("exit", code, flush=True)
    print(sys.argv[1], flush=True)
    print(sys.argv[1], file=sys.stderr, flush=True)
"""
MARK = "=== end of command ==="


def script(prompt: str, seed: int) -> str:
    if "generate the instruction <INS>" in prompt:
        return "<INS>Answer with yes or no.</INS>"
    if "Options:" in prompt:
        return "Yes"
    return linreg_script(prompt, seed)


@pytest.mark.slow
def test_the_key_never_reaches_store_cache_or_output(tmp_path: Path, capfd) -> None:
    store = tmp_path / "runs.db"
    turn = itertools.count()
    env = dict(os.environ, CANARY_KEY=KEY)
    outputs = []
    # Every fourth request fails with an error that repeats the Authorization header, so the
    # key also passes through litellm's exceptions, the FAILED trials' errors and the summary.
    with OpenAIServer(script, plan=lambda i: "leak" if next(turn) % 4 == 0 else None) as server:
        http = ["--api-base", server.api_base, "--api-key-env", "CANARY_KEY", "--num-retries", "1"]
        # the commands that hold the key, in a child process with the key in its environment only (one
        # child for the three: each command is `main(argv)` as `llmopt` runs it, its output delimited)
        commands = [
            ["run", "linreg", "--model", "openai/m", *http, "--steps", "3", "--structured", "off"],
            ["run", "prompt", "--task", "bbh/navigate", "--data-dir", DATA, "--max-train", "4", "--steps", "1",
             "--proposals", "2", "--model", "openai/m", *http, "--structured", "off", "--scorer", "openai/s",
             "--scorer-api-base", server.api_base, "--scorer-api-key-env", "CANARY_KEY", "--scorer-num-retries", "0"],
            ["evaluate", "--run", "prompt-llm-seed0", "--data-dir", DATA, "--max-examples", "4", "--scorer",
             "openai/s", "--scorer-api-base", server.api_base, "--scorer-api-key-env", "CANARY_KEY"],
        ]
        argvs = json.dumps([[*argv, "--store", str(store)] for argv in commands])
        done = subprocess.run([sys.executable, "-c", CHILD, MARK, argvs], env=env, capture_output=True, text=True,
                              timeout=600, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        outs, errs = done.stdout.split(MARK + "\n"), done.stderr.split(MARK + "\n")
        assert len(outs) == len(errs) == len(commands) + 1, done.stderr[-3000:]  # every command ran to its end
        for out, err in zip(outs[:-1], errs[:-1]):
            code = int(out.rsplit("exit ", 1)[1])
            # a round whose every call hit a 'leak' stops the run by llm_failure, and a prompt run whose
            # every scoring met one (the scorer has no retries; which requests leak depends on the order
            # they arrive in) fails with 'every evaluation failed': both exit 1, by design
            failed_by_design = "stopped by llm_failure" in err or "every evaluation failed" in err
            assert code == 0 or (code == 1 and failed_by_design), err
        outputs.append(done.stdout + done.stderr)
        assert any({k.lower(): v for k, v in h.items()}.get("authorization") == f"Bearer {KEY}"
                   for h in server.headers)  # the key was really sent
        assert server.injected["leak"] > 0
    # the readers print what the store holds: in this process (no key in its environment), every byte
    # written to stdout and stderr captured; a subprocess each would only add eleven imports
    readers = [["show"], ["show", "linreg-llm-seed0"],
               *[["export", "--table", t, "--format", f, "--out", str(tmp_path / f"export-{t}.{f}")]
                 for t in ("trials", "calls", "steps", "runs") for f in ("csv", "jsonl")]]
    capfd.readouterr()
    for argv in readers:
        assert main([*argv, "--store", str(store)]) == 0, argv
        done = capfd.readouterr()
        outputs.append(done.out + done.err)
    assert "linreg-llm-seed0" in outputs[1]  # the capture works: show printed the store's runs
    with RunStore(store) as s:
        errors = [t.error for run in s.runs() for t in s.trials(run.id) if t.error]
    assert any("***" in e for e in errors)  # the leaked header reached an error, scrubbed
    for out in outputs:
        assert KEY not in out
    files = [f for f in tmp_path.rglob("*") if f.is_file()]  # the store's run locks too (.llmopt-locks/runs.db/)
    assert any(f.name == "runs.db" for f in files) and len([f for f in files if f.name.startswith("export-")]) == 8
    for f in files:
        assert KEY.encode() not in f.read_bytes(), f
