"""What this machine lets the sandbox use, probed once: namespaces, uid separation, rlimits.

The layers come from the platform, not from us: util-linux's ``unshare`` (network, pid and mount
namespaces), the kernel's uids (the evaluator and the candidate as two unprivileged uids nobody else
uses), rlimits, sessions and process groups. Each one that works is used; each one that does not is
named by ``describe()`` with what its absence costs (docs/programs-isolation.md says the rest).
"""
from __future__ import annotations

import functools
import os
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass

# World-writable directories a dropped uid could write outside its own: each gets a private tmpfs.
WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock")
_NAMESPACES = ("--net", "--pid", "--mount", "--fork", "--kill-child", "--mount-proc")
UID_RANGE = (1 << 20, 1 << 30)  # far above any account's uid; two fresh ones for every evaluation
_UID_LOW, _UID_HIGH = UID_RANGE


@dataclass(frozen=True)
class Isolation:
    """The layers available here (``isolation()`` probes once per process)."""

    prefix: tuple[str, ...]     # the unshare command line every sandbox starts with, or ()
    namespaces: tuple[str, ...]  # of "net", "pid", "mount"
    separate_uids: bool         # running as root: evaluator and candidates as two fresh uids
    drop_caps: tuple[str, ...] = ()  # in a user namespace: setpriv dropping the namespace's root powers
    rlimits: tuple[str, ...] = ("cpu", "as", "fsize", "nofile", "core")

    @property
    def private_tmp(self) -> bool:
        return "mount" in self.namespaces

    def describe(self) -> str:
        """One line: what this machine gives, and what the fallback lacks."""
        has = ["fresh process per evaluation and call", "own session", "scrubbed env",
               "rlimits " + "/".join(self.rlimits + (("nproc",) if self.separate_uids else ()))]
        if self.namespaces:
            has.append("namespaces " + "+".join(self.namespaces))
        if self.separate_uids:
            has.append("evaluator and candidate as two fresh unprivileged uids")
        if self.drop_caps:
            has.append("no capabilities in the user namespace")
        lacks = []
        if "net" not in self.namespaces:
            lacks.append("network open")
        if "pid" not in self.namespaces:
            lacks.append("a process that leaves its group may outlive the kill")
        if "mount" not in self.namespaces:
            lacks.append("world-writable dirs (/tmp ...) writable")
        if "--user" in self.prefix and not self.drop_caps:
            lacks.append("root of its user namespace (could undo the private mounts)")
        if not self.separate_uids:
            outside = "" if "pid" in self.namespaces else "can signal the optimizer, "
            lacks.append(f"candidate runs as the optimizer's uid ({outside}can read the user's files, "
                         "can tamper with the evaluator; no process limit)")
        text = "sandbox: " + ", ".join(has)
        return text + ("; lacks: " + "; ".join(lacks) if lacks else "")

    def fresh_uids(self) -> tuple[int, int] | None:
        """Two uids no other evaluation uses (random in 2^20..2^30), or None without root."""
        if not self.separate_uids:
            return None
        base = _UID_LOW + 2 * secrets.randbelow((_UID_HIGH - _UID_LOW) // 2)
        return base, base + 1


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, timeout=10, env={}).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def probe() -> Isolation:
    """Try the strongest layers first; settle for what works (a few ms, once)."""
    root = os.geteuid() == 0
    unshare = shutil.which("unshare") or ("/usr/bin/unshare" if os.path.exists("/usr/bin/unshare") else None)
    true = shutil.which("true") or "/bin/true"
    namespaces: tuple[str, ...] = ()
    prefix: tuple[str, ...] = ()
    if unshare:
        candidates = [(unshare, *_NAMESPACES)]
        if not root:  # an unprivileged user namespace, where the kernel allows one
            candidates.append((unshare, "--user", "--map-root-user", *_NAMESPACES))
        for cmd in candidates:
            if _works([*cmd, true]):
                prefix, namespaces = cmd, ("net", "pid", "mount")
                break
    # without a mount namespace, other uids must reach python by themselves (pyenv under /root: no)
    reachable = bool(namespaces) or not any(
        blocked_ancestor(p) for p in (os.path.realpath(sys.executable), sys.base_prefix))
    setpriv = shutil.which("setpriv")
    drop = (setpriv, "--bounding-set=-all", "--inh-caps=-all", "--securebits=+noroot,+noroot_locked",
            "--no-new-privs") if setpriv and "--user" in prefix else ()
    return Isolation(prefix=prefix, namespaces=namespaces, separate_uids=root and reachable, drop_caps=drop)


@functools.lru_cache(maxsize=1)
def isolation() -> Isolation:
    """What this machine allows; cached for the process (the machine does not change under us)."""
    return probe()


def blocked_ancestor(path: str) -> str | None:
    """The topmost directory on ``path``'s way that other uids cannot traverse (no o+x), if any."""
    parts = os.path.realpath(path).split("/")[1:]
    current = ""
    for part in parts[:-1] if not os.path.isdir(path) else parts:
        current += "/" + part
        try:
            if not os.stat(current).st_mode & 0o001:
                return current
        except OSError:
            return None
    return None


def mount_plan(needed: list[str]) -> tuple[list[str], list[str]]:
    """(covers, writable): the world-writable dirs, plus every dir that hides a needed path from the
    sandbox's uids, minus those under another cover (covering the outer one covers them)."""
    writable = [d for d in WRITABLE_DIRS if os.path.isdir(d) and not os.path.islink(d)]
    blocked = {b for b in (blocked_ancestor(p) for p in needed) if b and b != "/"}
    covers = sorted(set(writable) | blocked)
    covers = [c for c in covers if not any(o != c and c.startswith(o.rstrip("/") + "/") for o in covers)]
    return covers, writable
