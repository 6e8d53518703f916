"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, started on a free
loopback port (fsync off, trust auth), stopped at the end of the session; one per pytest worker.

Skipped, with the reason, where no ``initdb`` exists (PATH, then /usr/lib/postgresql/*/bin). As
root (PostgreSQL refuses to run as root) the server runs as the ``postgres`` user, else ``nobody``.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

_COUNTER = itertools.count()


def find_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (initdb, pg_ctl), or None."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    return Path(versions[-1]).parent if versions else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _runner() -> tuple[list[str], str | None]:
    """How to run the server's programs: as is, or (as root) as postgres / nobody."""
    if os.geteuid() != 0:
        return [], None
    for user in ("postgres", "nobody"):
        try:
            pwd.getpwnam(user)
        except KeyError:
            continue
        return ["runuser", "-u", user, "--"], user
    pytest.skip("running as root and no postgres or nobody user to run PostgreSQL as")


class Server:
    """A running server: ``url(db)`` for a database, ``new_database()`` for a fresh one."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir, self.root, self.port = bindir, root, _free_port()
        self.prefix, user = _runner()
        self.data, self.sockets = root / "data", root / "sockets"
        for folder in (self.data, self.sockets):
            folder.mkdir(parents=True)
        if user is not None:
            for path in (root, self.data, self.sockets):
                shutil.chown(path, user)
            os.chmod(root, 0o755)
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(root / "data" / "log"), "-w", "-t", "60", "start",
                  "-o", f"-k {self.sockets} -h 127.0.0.1 -p {self.port} -F -c fsync=off "
                        "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100")

    def _run(self, program: str, *args: str) -> None:
        proc = subprocess.run([*self.prefix, str(self.bindir / program), *args], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{program} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self, stem: str = "t") -> str:
        """A fresh, empty database's URL (each test its own, so tests never see each other's runs)."""
        import psycopg

        name = f"{stem}_{os.getpid()}_{next(_COUNTER)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One PostgreSQL server for the session (per pytest worker)."""
    bindir = find_bin()
    if bindir is None:
        pytest.skip("no PostgreSQL server programs (initdb) in PATH or /usr/lib/postgresql/*/bin: "
                    "apt-get install postgresql")
    pytest.importorskip("psycopg", reason='the PostgreSQL store needs psycopg: pip install "llmopt[postgres]"')
    # as root, pytest's temporary folders (0700, root's) are closed to the server's user: a folder of its own
    with tempfile.TemporaryDirectory(prefix="llmopt-pg-") as root:
        server = Server(bindir, Path(root) if os.geteuid() == 0 else tmp_path_factory.mktemp("pg"))
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def pg_url(pg_server: Server) -> str:
    """A fresh database on the session's server, for one test."""
    return pg_server.new_database()
