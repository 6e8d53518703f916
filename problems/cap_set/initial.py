"""FunSearch's cap set problem: a large set of vectors in {0, 1, 2}^n with no three on a line.

Three distinct vectors a, b, c of {0, 1, 2}^n are on a line when a + b + c = 0 (mod 3) in every
coordinate. solve(n) builds a cap set greedily: it visits all 3^n vectors in order of decreasing
priority(el, n) and keeps a vector when it makes no line with two vectors already kept. Only
priority() changes; the larger the set solve(n) returns, the better.
"""

import itertools

import numpy as np


def solve(n):
    """The greedy cap set of {0, 1, 2}^n in the order priority() gives (ties: lexicographic)."""
    vectors = np.array(list(itertools.product((0, 1, 2), repeat=n)), dtype=np.int64)
    scores = np.array([float(priority(tuple(int(v) for v in el), n)) for el in vectors])
    return greedy(vectors, np.argsort(-scores, kind="stable")).tolist()


def greedy(vectors, order):
    """Keep vectors[i] for i in order unless it completes a line with two kept vectors.

    blocked[k] is True once vector k is the third point of a line through two kept vectors: the
    third point of a and b is -(a + b) mod 3, whose index in base 3 is a dot product with powers of 3.
    """
    n = vectors.shape[1]
    powers = 3 ** np.arange(n - 1, -1, -1)
    blocked = np.zeros(len(vectors), dtype=bool)
    kept = []
    for i in order:
        if blocked[i]:
            continue
        if kept:
            third = (-(vectors[kept] + vectors[i])) % 3
            blocked[third @ powers] = True
        kept.append(int(i))
        blocked[i] = True
    return vectors[kept]


# EVOLVE-BLOCK-START


def priority(el, n):
    """How early the greedy construction should consider the vector el (a tuple of n values in
    {0, 1, 2}); a higher priority is considered earlier."""
    return 0.0


# EVOLVE-BLOCK-END
