"""Classical TSP baselines against the proved optimum, on the paper's random instances.

    python benchmarks/tsp_baselines.py [--n 10 15 20 50 100 200] [--seeds 5] [--gls-time 2] [--exact-time 60]

The same table as ``llmopt baselines tsp`` (one implementation: baselines/tsp_report.py), with
the paper's sizes as defaults and the total wall time printed after it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llmopt.cli import main  # noqa: E402

DEFAULTS = ["--n", "10", "15", "20", "50", "100", "200", "--seeds", "5"]

if __name__ == "__main__":
    args = sys.argv[1:]
    if "--n" not in args:
        args = DEFAULTS[:7] + args
    if "--seeds" not in args:
        args += DEFAULTS[7:]
    started = time.perf_counter()
    code = main(["baselines", "tsp", *args])
    print(f"\n{time.perf_counter() - started:.0f} s in all (python benchmarks/tsp_baselines.py {' '.join(sys.argv[1:])})")
    sys.exit(code)
