"""Where a store is: a SQLite file path, or a ``postgresql://`` URL (``postgres://`` too), and the one
door that opens either (:func:`open_store`), so that every command takes ``--store`` the same way."""

from __future__ import annotations

import os

from llmopt.store.base import StoreBase
from llmopt.store.postgres import PostgresStore
from llmopt.store.records import StoreError
from llmopt.store.sqlite import RunStore
from llmopt.store.url import is_url, redact


def open_store(location: str | os.PathLike[str], readonly: bool = False) -> StoreBase:
    """The store at ``location``: a :class:`~llmopt.store.postgres.PostgresStore` for a
    ``postgresql://USER@HOST[:PORT]/DB`` URL, else the SQLite :class:`~llmopt.store.sqlite.RunStore`
    at that path. ``readonly=True`` never creates or writes anything (a missing store is one StoreError)."""
    if is_url(location):
        return PostgresStore(str(location), readonly=readonly)
    if isinstance(location, str) and "://" in location:
        scheme = location.split("://", 1)[0]
        raise StoreError(f"unknown store {redact(location)}: a store is a SQLite file path or a postgresql:// URL "
                         f"(not {scheme}://)")
    return RunStore(location, readonly=readonly)


def store_exists(location: str | os.PathLike[str]) -> bool:
    """Whether a reader may try to open ``location`` (a URL: always; a path: an existing file)."""
    return is_url(location) or os.path.exists(location)
