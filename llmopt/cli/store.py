"""``llmopt store copy SRC DST [--run NAME ...]``: carry runs between stores of either kind."""

from __future__ import annotations

import argparse
import sys

from llmopt.store import open_store
from llmopt.store.copy import copy_runs


class StoreCommand:
    """Work on whole stores. ``copy SRC DST``: copy runs (every one, or those named with --run), with
    all their trials, steps, calls, validations and facts, and the response cache, from store SRC to
    store DST; each a SQLite file or a postgresql://USER@HOST[:PORT]/DB URL. A run name DST already
    holds is refused (nothing is copied); a run still running in a live process is skipped (said so)."""

    HELP = "copy runs and the response cache between stores (SQLite files, PostgreSQL URLs)"

    @staticmethod
    def add_arguments(p: argparse.ArgumentParser) -> None:
        sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
        copy = sub.add_parser("copy", help="copy runs and the cache from one store to another",
                              description=StoreCommand.__doc__)
        copy.add_argument("src", metavar="SRC", help="the store to copy from (only read)")
        copy.add_argument("dst", metavar="DST", help="the store to copy into (created if a new SQLite file)")
        copy.add_argument("--run", action="append", default=[], metavar="NAME",
                          help="a run to copy (repeatable; default: every run)")

    @staticmethod
    def run(args: argparse.Namespace) -> int:
        with open_store(args.src, readonly=True) as src, open_store(args.dst) as dst:
            done = copy_runs(src, dst, args.run)
        for name, why in done.skipped:
            print(f"skipped run {name!r}: {why}; copy it when it has stopped", file=sys.stderr)
        names = ", ".join(done.runs) or "none"
        print(f"copied {len(done.runs)} run(s) ({names}) and {done.cache_entries} cache entries "
              f"from {src.path} to {dst.path}")
        return 0
