"""Where runs live: one SQLite file holds any number of runs, their trials, steps, calls and the
response cache (``sqlite``), readable as CSV, JSON lines or pandas (``export``)."""

from __future__ import annotations

from llmopt.store.export import load
from llmopt.store.sqlite import (
                                 DEFAULT_STORE,
                                 CallRecord,
                                 RunBusyError,
                                 RunExistsError,
                                 RunRecord,
                                 RunStore,
                                 SQLiteCache,
                                 StepRecord,
                                 StoreError,
                                 ValidationRecord,
)

__all__ = ["DEFAULT_STORE", "CallRecord", "RunBusyError", "RunExistsError", "RunRecord", "RunStore", "SQLiteCache",
           "StepRecord", "StoreError", "ValidationRecord", "load"]
