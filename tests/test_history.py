from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llmopt import Direction, SolutionHistory, Trial, TrialState


def trial(number: int, value: float | None, key: object = None, state: TrialState = TrialState.COMPLETE,
          step: int = 1) -> Trial:
    return Trial(number=number, step=step, state=state, source="user", solution=key, text=str(key),
                 key=key if key is not None else number, value=value)


def test_best_and_top_k_minimize() -> None:
    h = SolutionHistory(Direction.MINIMIZE)
    for i, v in enumerate([5.0, 3.0, 9.0, 1.0]):
        h.append(trial(i, v))
    assert h.best().value == 1.0
    assert [t.value for t in h.top_k(3)] == [5.0, 3.0, 1.0]  # worst-to-best: the best is last
    assert [t.value for t in h.top_k(10)] == [9.0, 5.0, 3.0, 1.0]
    assert h.top_k(0) == []


def test_maximize_and_ties_prefer_earlier() -> None:
    h = SolutionHistory(Direction.MAXIMIZE)
    h.append(trial(0, 2.0, key="a"))
    h.append(trial(1, 7.0, key="b"))
    h.append(trial(2, 7.0, key="c"))
    assert h.best().key == "b"
    assert [t.key for t in h.top_k(2)] == ["c", "b"]


def test_non_complete_trials_are_kept_but_never_ranked() -> None:
    h = SolutionHistory(Direction.MINIMIZE)
    h.append(trial(0, 4.0, key="a"))
    h.append(Trial(number=1, step=1, state=TrialState.INVALID, source="llm:x", raw="gibberish", error="no pair"))
    h.append(Trial(number=2, step=1, state=TrialState.DUPLICATE, source="llm:x", solution="a", text="a", key="a",
                   duplicate_of=0))
    h.append(Trial(number=3, step=1, state=TrialState.FAILED, source="llm:x", error="timeout"))
    assert len(h) == 4 and [t.key for t in h.top_k(5)] == ["a"]
    assert h.counts() == {"COMPLETE": 1, "INVALID": 1, "DUPLICATE": 1, "FAILED": 1}
    assert h.find("a").number == 0 and h.get(1).raw == "gibberish"


def test_append_rejects_repeated_numbers_and_keys() -> None:
    h = SolutionHistory(Direction.MINIMIZE, [trial(0, 1.0, key="a")])
    with pytest.raises(ValueError, match="already in the history"):
        h.append(trial(0, 2.0, key="b"))
    with pytest.raises(ValueError, match="repeats key"):
        h.append(trial(1, 2.0, key="a"))


def test_trials_are_frozen() -> None:
    t = trial(0, 1.0)
    with pytest.raises(AttributeError):
        t.value = 2.0  # type: ignore[misc]


def test_best_so_far_per_step() -> None:
    h = SolutionHistory(Direction.MINIMIZE)
    h.append(trial(0, 10.0, step=0))
    h.append(trial(1, 12.0, step=1))
    h.append(Trial(number=2, step=2, state=TrialState.INVALID, source="x", error="e"))
    h.append(trial(3, 4.0, step=3))
    assert h.best_so_far() == [(0, 10.0), (1, 10.0), (2, 10.0), (3, 4.0)]


@given(values=st.lists(st.tuples(st.integers(0, 30), st.floats(-1e6, 1e6)), max_size=60),
       k=st.integers(0, 25), maximize=st.booleans())
def test_top_k_is_sorted_bounded_unique(values: list[tuple[int, float]], k: int, maximize: bool) -> None:
    direction = Direction.MAXIMIZE if maximize else Direction.MINIMIZE
    h = SolutionHistory(direction)
    for number, (key, value) in enumerate(values):
        if h.find(key) is None:
            h.append(trial(number, value, key=key))
    top = h.top_k(k)
    assert len(top) == min(k, len({key for key, _ in values}))
    assert len({t.key for t in top}) == len(top)
    shown = [t.value for t in top]
    assert shown == sorted(shown, reverse=not maximize)  # worst first, best last
    if top:
        assert top[-1].value == h.best().value
        others = [t.value for t in h.completed() if t not in top]
        assert all(not direction.better(v, top[0].value) for v in others)  # nothing left out beats the shown
