"""The run store's tables, their version and how an older store is brought up to it.

Kept apart from :mod:`llmopt.store.sqlite` (which opens, reads and writes a store) so that the
layout of a store can be read in one place.
"""

from __future__ import annotations

#: The store every command uses unless given ``--store`` (a grid file may name its own).
DEFAULT_STORE = "runs.db"

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    problem TEXT NOT NULL,
    config TEXT NOT NULL,
    versions TEXT NOT NULL,
    status TEXT NOT NULL,
    stop_reason TEXT,
    stop_detail TEXT,
    elapsed_s REAL NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    first_number INTEGER NOT NULL,
    prompt TEXT,
    finished INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    PRIMARY KEY (run_id, step)
);
CREATE TABLE IF NOT EXISTS trials (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    step INTEGER NOT NULL,
    state TEXT NOT NULL,
    source TEXT NOT NULL,
    text TEXT,
    key TEXT,
    value REAL,
    raw TEXT,
    error TEXT,
    duplicate_of INTEGER,
    created REAL NOT NULL,
    metrics TEXT,
    parents TEXT,
    PRIMARY KEY (run_id, number)
);
CREATE TABLE IF NOT EXISTS calls (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    role TEXT NOT NULL,
    item INTEGER NOT NULL,
    step INTEGER NOT NULL,
    model TEXT NOT NULL,
    seed INTEGER NOT NULL,
    cache_key TEXT,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cost_usd REAL,
    latency_s REAL NOT NULL,
    cache_hit INTEGER NOT NULL,
    error TEXT,
    created REAL NOT NULL,
    choice INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    prompt TEXT,
    PRIMARY KEY (run_id, number, role, item)
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    prompt_tokens INTEGER,
    completion_tokens INTEGER,
    cost_usd REAL,
    finish_reason TEXT,
    created REAL NOT NULL,
    cached_tokens INTEGER
);
CREATE TABLE IF NOT EXISTS validations (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    step INTEGER NOT NULL,
    number INTEGER NOT NULL,
    value REAL,
    error TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, step, number)
);
CREATE TABLE IF NOT EXISTS facts (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


#: Bumped whenever a table changes; a store of another version is refused with a clear error. A table
#: added beside the others (``facts``) changes none: an older llmopt ignores it, a writer adds it to an
#: older store on opening (``IF NOT EXISTS``), and a store without it reads as having no facts.
SCHEMA_VERSION = 4
#: How a store of an older version is brought up to this one: the columns added since, in order
#: (version 3: a trial's metrics, a call's choice index and cached prompt tokens; version 4: a
#: trial's parents, a call's own prompt; the validations table is created with the schema).
MIGRATIONS = {
    2: ("ALTER TABLE trials ADD COLUMN metrics TEXT",
        "ALTER TABLE calls ADD COLUMN choice INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE calls ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE cache ADD COLUMN cached_tokens INTEGER"),
    3: ("ALTER TABLE trials ADD COLUMN parents TEXT",
        "ALTER TABLE calls ADD COLUMN prompt TEXT"),
}

