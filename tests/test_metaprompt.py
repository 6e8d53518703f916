from __future__ import annotations

import pytest

from llmopt import MetaPromptConfig, SolutionHistory, Trial, TrialState, build_meta_prompt
from problems.linear_regression.problem import LinearRegression

PROBLEM = LinearRegression()
HEAD = ("Now you will help me minimize a function with two input variables w, b. I have some (w, b) pairs and "
        "the function values at those points.")
TAIL = ("Give me a new (w, b) pair that is different from all pairs above, and has a function value lower than any "
        "of the above. Do not write code. The output must end with a pair [w, b], where w and b are numerical values.")


def history() -> SolutionHistory:
    h = SolutionHistory(PROBLEM.direction)
    rows = [((18, 15), 10386334.4), ((12, 11), 5000.72), ((16, 14), 2500.25), ((15, 14), 58.304)]
    for i, (pair, value) in enumerate(rows):
        h.append(Trial(number=i, step=0, state=TrialState.COMPLETE, source="start", solution=pair,
                       text=PROBLEM.encode(pair), key=pair, value=value))
    h.append(Trial(number=4, step=1, state=TrialState.INVALID, source="llm:x", raw="[w=1, b=1] oops", error="e"))
    h.append(Trial(number=5, step=1, state=TrialState.DUPLICATE, source="llm:x", solution=(15, 14),
                   text="w=15, b=14", key=(15, 14), duplicate_of=3))
    return h


def block(pairs_values: list[tuple[str, str | None]]) -> str:
    return "\n\n".join(f"input:\n{p}" + ("" if v is None else f"\nvalue:\n{v}") for p, v in pairs_values)


def test_default_is_the_papers_prompt() -> None:
    expected = (
        f"{HEAD} The pairs are arranged in descending order based on their function values, where lower values "
        f"are better.\n\n"
        + block([("w=18, b=15", "10386334"), ("w=12, b=11", "5001"), ("w=16, b=14", "2500"), ("w=15, b=14", "58")])
        + f"\n\n{TAIL}"
    )
    assert build_meta_prompt(PROBLEM, history(), MetaPromptConfig()) == expected


def test_max_shown_keeps_the_best() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(max_shown=2))
    assert block([("w=16, b=14", "2500"), ("w=15, b=14", "58")]) in text
    assert "w=18" not in text and "w=12" not in text


def test_best_to_worst() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(order="best_to_worst", max_shown=2))
    assert "arranged in ascending order based on their function values, where lower values are better" in text
    assert block([("w=15, b=14", "58"), ("w=16, b=14", "2500")]) in text


def test_random_order_is_a_seeded_permutation() -> None:
    config = MetaPromptConfig(order="random")
    # The order is stream(run seed, "metaprompt-order", len(history)).permutation(4) of the
    # worst-to-best list: [3, 1, 2, 0] for seed 3 and a history of 6 trials, written out here so
    # that the recorded meta-prompts of earlier runs stay the ones a resumed run renders.
    expected = (
        f"{HEAD} The pairs are listed in random order; lower function values are better.\n\n"
        + block([("w=15, b=14", "58"), ("w=12, b=11", "5001"), ("w=16, b=14", "2500"), ("w=18, b=15", "10386334")])
        + f"\n\n{TAIL}"
    )
    assert build_meta_prompt(PROBLEM, history(), config, seed=3) == expected
    others = {tuple(line for line in build_meta_prompt(PROBLEM, history(), MetaPromptConfig(
        order="random"), seed=s).splitlines() if line.startswith("w=")) for s in range(10)}
    assert len(others) > 1  # the seed matters


def test_exact_scores() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(scores="exact", max_shown=2))
    assert block([("w=16, b=14", "2500.25"), ("w=15, b=14", "58.304")]) in text


def test_rounded_decimals() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(decimals=2, max_shown=2))
    assert block([("w=16, b=14", "2500.25"), ("w=15, b=14", "58.30")]) in text


def test_buckets_over_the_shown_range() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(scores="buckets", buckets=4))
    assert block([("w=18, b=15", "4"), ("w=12, b=11", "1"), ("w=16, b=14", "1"), ("w=15, b=14", "1")]) in text
    fixed = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(scores="buckets", buckets=4,
                                                                   bucket_range=(0.0, 10000.0)))
    assert block([("w=18, b=15", "4"), ("w=12, b=11", "3"), ("w=16, b=14", "2"), ("w=15, b=14", "1")]) in fixed


def test_hidden_scores() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(scores="hidden", max_shown=2))
    assert "The pairs are arranged from the worst to the best." in text
    assert block([("w=16, b=14", None), ("w=15, b=14", None)]) in text
    assert "value:" not in text


def test_custom_instruction() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig(instruction="Propose one more pair."))
    assert text.endswith("Propose one more pair. Do not write code. The output must end with a pair [w, b], "
                         "where w and b are numerical values.")


def test_invalid_and_duplicate_replies_never_shown() -> None:
    text = build_meta_prompt(PROBLEM, history(), MetaPromptConfig())
    assert "oops" not in text and text.count("w=15, b=14") == 1


def test_empty_history() -> None:
    text = build_meta_prompt(PROBLEM, SolutionHistory(PROBLEM.direction), MetaPromptConfig())
    assert text.startswith(HEAD) and text.endswith(TAIL) and "input:" not in text


@pytest.mark.parametrize("kwargs, message", [
    ({"max_shown": -1}, "max_shown"), ({"order": "sideways"}, "order"), ({"scores": "stars"}, "scores"),
    ({"decimals": -2}, "decimals"), ({"buckets": 0}, "buckets"), ({"bucket_range": (5.0, 1.0)}, "bucket_range"),
])
def test_config_rejects_bad_values(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MetaPromptConfig(**kwargs)
