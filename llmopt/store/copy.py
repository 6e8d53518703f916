"""``llmopt store copy``: runs (with every row they own) and the response cache, from one store to
another of either kind (SQLite to PostgreSQL, back, or between two files).

A run arrives whole or not at all (one transaction per run, under its ownership lock in the
destination), under its own name (a name the destination holds already is refused before anything
is copied: runs are never merged or renamed), with its stored status; a run still written by a live
process is skipped (its rows are not final), one whose process died is copied and reads as
``interrupted`` there too, resumable. Cache entries the destination has already are kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from llmopt.store.base import StoreBase
from llmopt.store.records import RunRecord, StoreError

#: A run's tables besides ``runs``, in an order that keeps every reference valid.
RUN_TABLES = ("steps", "trials", "calls", "validations", "facts")


@dataclass(frozen=True)
class Copied:
    """What a copy did: the runs copied, those skipped (name, why) and the cache entries offered."""

    runs: tuple[str, ...]
    skipped: tuple[tuple[str, str], ...]
    cache_entries: int


def copy_runs(src: StoreBase, dst: StoreBase, names: Sequence[str] = (), page: int = 500) -> Copied:
    """Copy the runs ``names`` (default: all) of ``src`` and its cache into ``dst``."""
    runs = [src.get_run(name) for name in dict.fromkeys(names)] if names else src.runs()
    taken = [run.name for run in runs if dst.find_run(run.name) is not None]
    if taken:
        raise StoreError(f"{dst.path} already holds run(s) {', '.join(map(repr, taken))}: nothing copied (a run is "
                         "never merged or renamed; name the others with --run, or copy into another store)")
    copied: list[str] = []
    skipped: list[tuple[str, str]] = []
    for run in runs:
        if src.run_status(run) == "running":
            skipped.append((run.name, f"still running ({src.owner(run.name) or 'another process'})"))
            continue
        _copy_run(src, dst, run)
        copied.append(run.name)
    return Copied(tuple(copied), tuple(skipped), _copy_cache(src, dst, page))


def _copy_run(src: StoreBase, dst: StoreBase, run: RunRecord) -> None:
    """One run's rows into ``dst`` in one transaction, owned there while it is written."""
    row = {k: v for k, v in src.run_row(run.name).items() if k != "id"}
    dst.claim(run.name, creating=True)
    try:
        with dst._transaction():
            try:
                dst.insert_rows("runs", [row], keep_existing=False)
            except dst._integrity_error:
                raise StoreError(f"{dst.path} already holds run {run.name!r} (created meanwhile): "
                                 "not copied") from None
            new_id = dst.get_run(run.name).id
            for table in RUN_TABLES:
                dst.insert_rows(table, src.records(table, run.id), run_id=new_id)
    finally:
        dst.release(run.name)


def _copy_cache(src: StoreBase, dst: StoreBase, page: int) -> int:
    """Every cache entry of ``src`` into ``dst``, ``page`` at a time by key (an entry there already is kept)."""
    count, after = 0, ""
    while True:
        rows = src.cache_rows(after, page)
        if not rows:
            return count
        with dst._transaction():
            dst.insert_rows("cache", rows)
        count += len(rows)
        after = rows[-1]["key"]
