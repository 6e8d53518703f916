"""Pack 26 circles in the unit square so that the sum of their radii is as large as possible.

construct_packing() returns (centers, radii): 26 (x, y) pairs and 26 radii. Every circle must lie
inside [0, 1] x [0, 1] and no two circles may overlap; the score is the sum of the radii.
"""

import numpy as np

# EVOLVE-BLOCK-START


def construct_packing():
    """Centers on a 6 x 5 grid (its first 26 points), radii as large as the walls and neighbours allow."""
    xs = (np.arange(6) + 0.5) / 6
    ys = (np.arange(5) + 0.5) / 5
    centers = np.array([(x, y) for y in ys for x in xs])[:26]
    return centers, feasible_radii(centers)


def feasible_radii(centers):
    """Each radius is the distance to the nearest wall or half the distance to the nearest other
    center, whichever is smaller: then no two circles overlap and none leaves the square."""
    walls = np.min(np.concatenate([centers, 1.0 - centers], axis=1), axis=1)
    distances = np.hypot(*(centers[:, None, :] - centers[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(distances, np.inf)
    return np.minimum(walls, distances.min(axis=1) / 2)


# EVOLVE-BLOCK-END
