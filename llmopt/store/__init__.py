"""Where runs live: a SQLite file (``sqlite``) or a PostgreSQL database (``postgres``) holds any
number of runs, their trials, steps, calls and the response cache, behind one API (``base``);
:func:`open_store` opens either from a ``--store`` value; ``export`` reads them as CSV, JSON lines
or pandas, ``copy`` carries runs from one store to another."""

from __future__ import annotations

from llmopt.store.base import StoreBase, StoreCache
from llmopt.store.export import load
from llmopt.store.location import open_store, store_exists
from llmopt.store.postgres import PostgresStore
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
from llmopt.store.url import is_url

__all__ = ["DEFAULT_STORE", "CallRecord", "PostgresStore", "RunBusyError", "RunExistsError", "RunRecord", "RunStore",
           "SQLiteCache", "StepRecord", "StoreBase", "StoreCache", "StoreError", "ValidationRecord", "is_url", "load",
           "open_store", "store_exists"]
