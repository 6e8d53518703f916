"""A PostgreSQL store's URL: how it is recognised and how messages name it (never with its password)."""

from __future__ import annotations

import urllib.parse
from typing import Any

#: The URL schemes of a PostgreSQL store (libpq's own two spellings).
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_url(location: Any) -> bool:
    """Whether ``location`` names a PostgreSQL store rather than a SQLite file."""
    return isinstance(location, str) and location.lower().startswith(POSTGRES_SCHEMES)


def redact(url: str) -> str:
    """``url`` without its password (in the user part or as a ``password=`` parameter): what messages
    show and what a run records of its command line (anything that is not a URL is returned as is)."""
    if not is_url(url):
        return url
    parts = urllib.parse.urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = urllib.parse.quote(parts.username or "", safe="")
        netloc = f"{user}@{netloc.rsplit('@', 1)[1]}" if user else netloc.rsplit("@", 1)[1]
    query = "&".join(p for p in parts.query.split("&") if p and not p.lower().startswith("password="))
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class StoreURL(str):
    """A PostgreSQL store's URL as messages name it (no password); ``stem`` is its database's name,
    as a SQLite store's ``path.stem`` is its file's (what a report is titled by)."""

    @property
    def stem(self) -> str:
        return urllib.parse.urlsplit(self).path.lstrip("/") or "store"


def redact_words(words: list[str]) -> list[str]:
    """A command line's words with every store URL's password taken out (``--store=URL`` too)."""
    out = []
    for word in words:
        flag, eq, value = word.partition("=")
        out.append(f"{flag}={redact(value)}" if eq and flag.startswith("--") else redact(word))
    return out
