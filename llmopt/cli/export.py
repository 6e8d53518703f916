"""``llmopt export``: a store's records as CSV or JSON lines (see :mod:`llmopt.store.export`)."""

from __future__ import annotations

from typing import Any

from llmopt.store import DEFAULT_STORE, open_store
from llmopt.store.export import FORMATS, TABLES, dumps, rows


class ExportCommand:
    """``llmopt export``: a store's trials, calls, steps or runs as CSV or JSON lines."""

    HELP = "write a store's trials, LLM calls, steps or runs as CSV or JSON lines"

    @staticmethod
    def add_arguments(p: Any) -> None:
        p.add_argument("--store", default=DEFAULT_STORE, help=f"the run store (default {DEFAULT_STORE})")
        p.add_argument("--run", action="append", help="a run name (repeatable; default: every run)")
        p.add_argument("--table", choices=TABLES, default="trials", help="what to write (default %(default)s)")
        p.add_argument("--format", choices=FORMATS, default="csv",
                       help="CSV, or JSON lines (one object a line) (default %(default)s)")
        p.add_argument("--out", default="-", help="output file, - for standard output (default -)")

    @staticmethod
    def run(args: Any) -> int:
        with open_store(args.store, readonly=True) as store:
            text = dumps(rows(store, args.table, args.run), args.format)
        if args.out == "-":
            print(text, end="")
        else:
            with open(args.out, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        return 0
