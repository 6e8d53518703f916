"""TSP instances: the paper's random generator and TSPLIB files, as one distance matrix.

Every solver and the OPRO problem see a :class:`TSPInstance`: coordinates (when the instance
has them) and the full symmetric distance matrix with TSPLIB's rounding already applied, so
all tour lengths agree with the published optima (eil51: 426, berlin52: 7542).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from llmopt.seeding import stream


class TSPLIBError(ValueError):
    """A TSPLIB file is malformed; the message names the file and the line."""


@dataclass(frozen=True, eq=False)
class TSPInstance:
    name: str
    dist: np.ndarray = field(repr=False)  # (n, n) float64, symmetric, zero diagonal
    coords: np.ndarray | None = field(default=None, repr=False)  # (n, 2), or None for EXPLICIT
    edge_weight_type: str = "EUC"  # EUC (unrounded Euclidean), EUC_2D, CEIL_2D, ATT, GEO, EXPLICIT
    source: str = "generated"

    @property
    def n(self) -> int:
        return int(self.dist.shape[0])


def tour_length(dist: np.ndarray, tour: Sequence[int]) -> float:
    """Length of the closed tour (returns to its first city)."""
    order = np.asarray(tour, dtype=int)
    return float(dist[order, np.roll(order, -1)].sum())


def euclidean(coords: np.ndarray) -> np.ndarray:
    diff = coords[:, None, :] - coords[None, :, :]
    return np.sqrt((diff ** 2).sum(axis=-1))


def random_instance(n: int, seed: int, *, low: int = -100, high: int = 100, truncate: bool = False) -> TSPInstance:
    """The paper's instances: n points with integer coordinates uniform in [low, high].

    The official code draws uniform reals and truncates them with ``int()`` (which piles
    points onto 0 from both sides); ``truncate=True`` reproduces that, the default draws the
    integers uniformly. Distances are unrounded Euclidean, as in the official code.
    """
    if n < 3:
        raise ValueError(f"a TSP instance needs at least 3 cities, got n={n}")
    if low >= high:
        raise ValueError(f"coordinate range must have low < high, got [{low}, {high}]")
    rng = stream(seed, "tsp-instance", n)
    if truncate:
        coords = np.trunc(rng.uniform(low, high, size=(n, 2)))
    else:
        coords = rng.integers(low, high + 1, size=(n, 2)).astype(float)
    kind = "truncated" if truncate else "uniform"
    return TSPInstance(f"random-n{n}-seed{seed}-{kind}", euclidean(coords), coords, "EUC", "generated")


# --- TSPLIB ------------------------------------------------------------------------------

def _nint(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5)


def _geo_radians(values: np.ndarray) -> np.ndarray:
    degrees = np.trunc(values)  # TSPLIB: DDD.MM, degrees then minutes
    minutes = values - degrees
    return math.pi * (degrees + 5.0 * minutes / 3.0) / 180.0


def tsplib_distances(coords: np.ndarray, kind: str) -> np.ndarray:
    """The distance functions of TSPLIB95 (Reinelt 1991, section 2)."""
    if kind == "EUC_2D":
        d = _nint(euclidean(coords))
    elif kind == "CEIL_2D":
        d = np.ceil(euclidean(coords))
    elif kind == "ATT":
        diff = coords[:, None, :] - coords[None, :, :]
        r = np.sqrt((diff ** 2).sum(axis=-1) / 10.0)
        t = _nint(r)
        d = np.where(t < r, t + 1, t)
    elif kind == "GEO":
        lat, lon = _geo_radians(coords[:, 0]), _geo_radians(coords[:, 1])
        q1 = np.cos(lon[:, None] - lon[None, :])
        q2 = np.cos(lat[:, None] - lat[None, :])
        q3 = np.cos(lat[:, None] + lat[None, :])
        d = np.trunc(6378.388 * np.arccos(np.clip(0.5 * ((1 + q1) * q2 - (1 - q1) * q3), -1, 1)) + 1.0)
    else:
        raise ValueError(f"unsupported EDGE_WEIGHT_TYPE {kind}")
    np.fill_diagonal(d, 0.0)
    return d


_EXPLICIT_FORMATS = ("FULL_MATRIX", "UPPER_ROW", "LOWER_ROW", "UPPER_DIAG_ROW", "LOWER_DIAG_ROW")


def _explicit_matrix(values: list[float], n: int, fmt: str, where: str) -> np.ndarray:
    d = np.zeros((n, n))
    if fmt == "FULL_MATRIX":
        cells = [(i, j) for i in range(n) for j in range(n)]
    elif fmt == "UPPER_ROW":
        cells = [(i, j) for i in range(n) for j in range(i + 1, n)]
    elif fmt == "LOWER_ROW":
        cells = [(i, j) for i in range(n) for j in range(i)]
    elif fmt == "UPPER_DIAG_ROW":
        cells = [(i, j) for i in range(n) for j in range(i, n)]
    elif fmt == "LOWER_DIAG_ROW":
        cells = [(i, j) for i in range(n) for j in range(i + 1)]
    else:
        raise TSPLIBError(f"{where}: EDGE_WEIGHT_FORMAT {fmt} is not supported (supported: {', '.join(_EXPLICIT_FORMATS)})")
    if len(values) != len(cells):
        raise TSPLIBError(f"{where}: EDGE_WEIGHT_SECTION has {len(values)} numbers, {fmt} for "
                          f"DIMENSION {n} needs {len(cells)}")
    for (i, j), v in zip(cells, values):
        d[i, j] = d[j, i] = v
    if fmt == "FULL_MATRIX":
        full = np.array(values, dtype=float).reshape(n, n)
        if not np.allclose(full, full.T):
            raise TSPLIBError(f"{where}: FULL_MATRIX is not symmetric (asymmetric instances are not supported)")
        d = full.copy()
    np.fill_diagonal(d, 0.0)
    return d


def read_tsplib(path: str | Path) -> TSPInstance:
    """Read a symmetric TSPLIB95 file (EUC_2D, CEIL_2D, ATT, GEO, EXPLICIT)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise TSPLIBError(f"cannot read TSPLIB file {path}: {exc.strerror}") from None
    spec: dict[str, str] = {}
    coords: dict[int, tuple[float, float]] = {}
    weights: list[float] = []
    section, section_line = None, 0
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        where = f"{path}:{lineno}"
        if not line:
            continue
        if line == "EOF":
            break
        head = re.match(r"^([A-Z_]+)\s*(?::\s*(.*))?$", line)
        if head and (head.group(2) is not None or head.group(1).endswith("_SECTION")):
            key, value = head.group(1), (head.group(2) or "").strip()
            if key.endswith("_SECTION"):
                section, section_line = key, lineno
                if key not in ("NODE_COORD_SECTION", "EDGE_WEIGHT_SECTION", "DISPLAY_DATA_SECTION"):
                    raise TSPLIBError(f"{where}: section {key} is not supported")
            else:
                spec[key] = value
                section = None
            continue
        if section == "NODE_COORD_SECTION":
            parts = line.split()
            try:
                if len(parts) != 3:
                    raise ValueError
                node, x, y = int(parts[0]), float(parts[1]), float(parts[2])
            except ValueError:
                raise TSPLIBError(f"{where}: expected 'node x y' in NODE_COORD_SECTION, got {line[:60]!r}") from None
            if not (math.isfinite(x) and math.isfinite(y)):
                raise TSPLIBError(f"{where}: coordinates must be finite numbers, got {line[:60]!r}")
            if node in coords:
                raise TSPLIBError(f"{where}: node {node} appears twice")
            coords[node] = (x, y)
        elif section == "EDGE_WEIGHT_SECTION":
            try:
                weights += [float(v) for v in line.split()]
            except ValueError:
                raise TSPLIBError(f"{where}: expected numbers in EDGE_WEIGHT_SECTION, got {line[:60]!r}") from None
        elif section == "DISPLAY_DATA_SECTION":
            continue
        else:
            raise TSPLIBError(f"{where}: cannot read {line[:60]!r} (expected 'KEY : value' or a section)")
    return _build(path, spec, coords, weights, section_line)


def _build(path: Path, spec: dict[str, str], coords: dict[int, tuple[float, float]], weights: list[float],
           section_line: int) -> TSPInstance:
    words = spec.get("TYPE", "TSP").split()
    kind = words[0] if words else "(empty)"
    if kind != "TSP":
        raise TSPLIBError(f"{path}: TYPE {kind} is not supported (only symmetric TSP)")
    try:
        n = int(spec["DIMENSION"])
    except (KeyError, ValueError):
        raise TSPLIBError(f"{path}: DIMENSION is missing or not an integer") from None
    if not 3 <= n <= 100_000:
        raise TSPLIBError(f"{path}: DIMENSION {n} is out of range [3, 100000]")
    ewt = spec.get("EDGE_WEIGHT_TYPE", "")
    name = spec.get("NAME", path.stem)
    where = f"{path}:{section_line}"
    if ewt == "EXPLICIT":
        dist = _explicit_matrix(weights, n, spec.get("EDGE_WEIGHT_FORMAT", ""), where)
        xy = np.array([coords[i] for i in sorted(coords)]) if len(coords) == n else None
        return TSPInstance(name, dist, xy, "EXPLICIT", str(path))
    if ewt not in ("EUC_2D", "CEIL_2D", "ATT", "GEO"):
        raise TSPLIBError(f"{path}: EDGE_WEIGHT_TYPE {ewt or '(missing)'} is not supported "
                          f"(supported: EUC_2D, CEIL_2D, ATT, GEO, EXPLICIT)")
    if sorted(coords) != list(range(1, n + 1)):
        raise TSPLIBError(f"{where}: NODE_COORD_SECTION must list nodes 1..{n} once each, got {len(coords)} nodes")
    xy = np.array([coords[i] for i in range(1, n + 1)], dtype=float)
    return TSPInstance(name, tsplib_distances(xy, ewt), xy, ewt, str(path))


def read_tour(path: str | Path, n: int | None = None) -> list[int]:
    """A TSPLIB ``.tour`` file as 0-based city indices."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as exc:
        raise TSPLIBError(f"cannot read tour file {path}: {exc.strerror}") from None
    tour: list[int] = []
    inside = False
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line == "TOUR_SECTION":
            inside = True
            continue
        if not inside or not line:
            continue
        for token in line.split():
            if token in ("-1", "EOF"):
                inside = False
                break
            try:
                tour.append(int(token) - 1)
            except ValueError:
                raise TSPLIBError(f"{path}:{lineno}: expected a node number in TOUR_SECTION, got {token!r}") from None
        if line == "EOF":
            break
    size = n if n is not None else len(tour)
    if sorted(tour) != list(range(size)):
        raise TSPLIBError(f"{path}: TOUR_SECTION is not a permutation of nodes 1..{size}")
    return tour
