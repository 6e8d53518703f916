"""What turning off llama.cpp's extra buffer types costs the embedded model, in tokens/s.

    python benchmarks/embedded_cpu.py [--repeats 5] [--threads 1]

llmopt loads models with ``use_extra_bufts = False`` (llmopt.llm.embedded): the AMX kernels of a native
build segfault on some Xeons, and the switch also turns off weight repacking. This loads the
embedded model both ways in fresh child processes (the AMX path may crash: a child's death is
reported, not suffered) and times prompt evaluation (a 500-token OPRO-sized prompt) and
generation (64 tokens), median over repeats; it also times the probe (llmopt.llm.embedded.check_runs)
a run pays once per machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
from llmopt.llm import embedded as local
extra, threads, repeats = sys.argv[1] == "on", int(sys.argv[2]), int(sys.argv[3])
path = local.model_path("smollm2")
if extra:
    from llama_cpp import Llama
    llama = Llama(model_path=str(path), n_ctx=4096, n_threads=threads, n_threads_batch=threads, verbose=False)
else:
    llama = local.load_llama(path, 4096, threads)
prompt = llama.tokenize(("Now you will help me minimize a function with two input variables w, b. " * 30).encode())[:500]
pp, tg = [], []
for i in range(repeats):
    llama.reset()
    t = time.perf_counter(); llama.eval(prompt); pp.append(len(prompt) / (time.perf_counter() - t))
    t = time.perf_counter(); n = 0
    for tok in llama.generate(prompt, temp=1.0, reset=True):
        n += 1
        if n == 64:
            break
    tg.append(n / (time.perf_counter() - t))
print(json.dumps({"pp": pp, "tg": tg, "use_extra_bufts": bool(llama.model_params.use_extra_bufts)}))
"""


def measure(extra: str, threads: int, repeats: int) -> str:
    done = subprocess.run([sys.executable, "-c", CHILD, extra, str(threads), str(repeats)], capture_output=True,
                          text=True, timeout=900)
    if done.returncode != 0:
        return f"| {extra} | crashed (exit {done.returncode}) | - | - |"
    out = json.loads(done.stdout.strip().splitlines()[-1])
    return (f"| {extra} | {out['use_extra_bufts']} | {statistics.median(out['pp']):.0f} | "
            f"{statistics.median(out['tg']):.1f} |")


def probe_seconds(threads: int) -> float:
    from llmopt.llm import embedded as local

    with tempfile.TemporaryDirectory() as cache:
        import os

        os.environ["LLMOPT_CACHE_DIR"] = cache
        started = time.perf_counter()
        local.check_runs(local.model_path("smollm2"), threads)
        return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    from llmopt.llm.embedded import cpu_summary

    print(f"CPU: {cpu_summary()}; {args.threads} thread(s); median of {args.repeats}\n")
    print("| extra buffer types | loaded with use_extra_bufts | prompt tokens/s (500) | generated tokens/s (64) |")
    print("|---|---|---|---|")
    for extra in ("on", "off"):
        print(measure(extra, args.threads, args.repeats), flush=True)
    print(f"\nprobe (child process: load + two 8-token generations), once per machine: "
          f"{probe_seconds(args.threads):.2f} s")


if __name__ == "__main__":
    main()
