"""Hostile candidates (issue 27), each a test: the evaluation returns (never raises) with ok=False and a
one-line reason (or, where the attack can only fail silently, the honest score), within a bounded
time, with this process and its files untouched and no process of the sandbox's uids left behind.

The cases themselves live in llmopt/programs/_hostile.py (benchmarks/isolation.py runs them too).
"""
from __future__ import annotations

import os
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from llmopt.programs._hostile import CASES
from llmopt.programs.isolation import Isolation, isolation
from llmopt.programs.sandbox import Limits, Outcome, evaluate_in_sandbox

ISO = isolation()
LIMITS = Limits(wall_s=3, cpu_s=3, memory_mb=512, file_mb=4, processes=16, output_kb=16)
LOOP_LIMITS = Limits(wall_s=2, cpu_s=10, memory_mb=512, file_mb=4, processes=16, output_kb=16)
needs_uids = pytest.mark.skipif(not ISO.separate_uids, reason="needs root: no separate uids here")
needs_net_ns = pytest.mark.skipif("net" not in ISO.namespaces, reason="no network namespace here")
needs_mount_ns = pytest.mark.skipif("mount" not in ISO.namespaces, reason="no mount namespace here")


def _alive(uids: set[int]) -> list[int]:
    """Live processes of ``uids`` (zombies run nothing: the machine's init reaps them in its time)."""
    found = []
    for name in os.listdir("/proc"):
        try:
            if name.isdigit() and os.stat(f"/proc/{name}").st_uid in uids:
                with open(f"/proc/{name}/stat") as handle:
                    if handle.read().rsplit(")", 1)[-1].split()[0] not in ("Z", "X"):
                        found.append(int(name))
        except OSError:
            pass
    return found


@pytest.fixture
def sandbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """evaluate_in_sandbox that records the uids it used; afterwards none of them runs anything."""
    used: set[int] = set()
    fresh = Isolation.fresh_uids

    def recording(self: Isolation) -> tuple[int, int] | None:
        pair = fresh(self)
        used.update(pair or ())
        return pair

    monkeypatch.setattr(Isolation, "fresh_uids", recording)

    def run(kind: str, limits: Limits = LIMITS, expect: str | None = None, **kwargs: Any) -> Outcome:
        case = CASES[kind]
        started = time.monotonic()
        outcome = evaluate_in_sandbox(case.source, case.spec(), limits=limits, kwargs=kwargs or None)
        elapsed = time.monotonic() - started
        assert elapsed < limits.wall_s + 3, f"{kind}: took {elapsed:.1f} s"
        assert "\n" not in (outcome.reason or "")
        if case.expect == "fail":
            assert not outcome.ok and outcome.value is None, outcome
            assert (expect or case.reason) in (outcome.reason or ""), outcome.reason
        else:
            assert outcome.ok and outcome.value == case.value, outcome
        return outcome

    yield run
    assert os.getpid() > 0  # still here
    deadline = time.monotonic() + 3
    while _alive(used) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(used), "processes of the sandbox's uids left behind"


@pytest.mark.slow  # seconds: it runs until a limit
def test_an_infinite_loop_is_killed_at_the_wall_time(sandbox: Any) -> None:
    outcome = sandbox("infinite loop", LOOP_LIMITS)
    assert outcome.wall_s < LOOP_LIMITS.wall_s + 1.5


@pytest.mark.slow  # seconds: it runs until a limit
def test_an_infinite_loop_in_the_evaluators_process_kills_the_process_group(sandbox: Any) -> None:
    outcome = sandbox("infinite loop in the evaluator", LOOP_LIMITS)
    assert outcome.reason == "timed out after 2 s (process group killed)"


@pytest.mark.slow  # seconds: it runs until a limit
def test_a_cpu_hog_hits_the_cpu_limit_before_the_wall_time(sandbox: Any) -> None:
    outcome = sandbox("infinite loop in the evaluator", Limits(wall_s=8, cpu_s=1), expect="CPU limit")
    assert outcome.reason == "CPU limit 1 s exceeded (evaluator killed)"


@pytest.mark.slow  # seconds: it runs until a limit
@needs_uids
def test_a_fork_loop_stops_at_the_process_limit_and_dies_with_the_evaluation(sandbox: Any) -> None:
    sandbox("fork loop", LOOP_LIMITS)


def test_a_memory_bomb_hits_the_memory_limit(sandbox: Any) -> None:
    outcome = sandbox("memory bomb", Limits(wall_s=5, cpu_s=5, memory_mb=256))
    assert outcome.reason.startswith("memory limit 256 MB exceeded")


def test_a_gigabyte_of_output_is_cut_at_the_file_limit_and_capped(sandbox: Any) -> None:
    outcome = sandbox("a gigabyte of output")
    assert "file size limit 4 MB" in outcome.reason
    assert len(outcome.stdout) <= LIMITS.output_kb * 1024 + 100


def test_the_environment_holds_no_keys(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-the-sandbox")
    outcome = sandbox("reading the environment for keys")
    assert "sk-test-not-for-the-sandbox" not in repr(outcome)


@needs_uids
@needs_mount_ns
def test_writing_outside_its_directory_touches_no_file_here(sandbox: Any, tmp_path: Path) -> None:
    token = f"llmopt-hostile-{os.getpid()}-{time.monotonic_ns()}"
    targets = [f"/tmp/{token}", f"/dev/shm/{token}", f"/var/tmp/{token}", str(tmp_path / token),
               os.path.join(os.getcwd(), token)]
    outcome = sandbox("writing outside its directory", args=[targets])
    assert "PermissionError" in outcome.reason or "FileNotFoundError" in outcome.reason
    assert not [t for t in targets if os.path.exists(t)]
    assert list(tmp_path.iterdir()) == []


@needs_net_ns
def test_a_socket_reaches_neither_loopback_nor_the_internet(sandbox: Any) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        outcome = sandbox("opening a socket", args=["127.0.0.1", port])
        with pytest.raises(TimeoutError):
            listener.accept()
    assert "Network is unreachable" in outcome.reason or "refused" in outcome.reason
    sandbox("opening a socket", args=["1.1.1.1", 53])


@needs_uids
def test_killing_its_parent_is_refused(sandbox: Any) -> None:
    sandbox("killing its parent")


@needs_uids
def test_kill_minus_one_and_every_pid_leave_the_evaluator_alive(sandbox: Any) -> None:
    sandbox("kill(-1, 9) and every pid it sees")  # the evaluator lived to report the honest score


def test_os_exit_before_the_score_is_a_failure(sandbox: Any) -> None:
    sandbox("os._exit(0) before the score")


def test_os_exit_in_the_evaluators_process_is_a_failure(sandbox: Any) -> None:
    outcome = sandbox("os._exit(0) in the evaluator")
    assert outcome.reason == "evaluator exited with status 0 before reporting a score"


def test_a_segfault_is_a_failure(sandbox: Any) -> None:
    outcome = sandbox("a segfault")
    assert outcome.reason == "candidate crashed with SIGSEGV in solve()"


@pytest.mark.parametrize("kind", ["a NaN score", "an infinite score", "an object pretending to be a number"])
def test_a_score_that_is_not_a_finite_number_is_rejected(sandbox: Any, kind: str) -> None:
    sandbox(kind)


@needs_uids
def test_monkeypatching_the_evaluators_checks_changes_nothing(sandbox: Any) -> None:
    outcome = sandbox("monkeypatching the evaluator's checks")
    assert outcome.feedback == "solve([3, 1, 2]) = [3, 1, 2]"


@needs_uids
def test_a_forged_result_does_not_reach_the_optimizer(sandbox: Any) -> None:
    sandbox("forging the result")
