"""Where scoring runs: in the loop, on threads, on processes, or on a Dask cluster.

The optimizer takes anything with ``submit(fn, *args)`` returning futures with ``result()``:
``concurrent.futures`` pools and ``dask.distributed.Client`` both qualify, so this module only
opens and closes them. Scores are recorded in proposal order whatever finishes first, so a run
is the same on every executor. Worth it when scoring is expensive (large TSP instances, a
user's black-box function); a problem whose score calls a model already runs its calls
concurrently.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any, Iterator

EXECUTORS = ("none", "threads", "processes", "dask")


@contextlib.contextmanager
def open_executor(kind: str, workers: int | None = None, address: str | None = None) -> Iterator[Any]:
    """An executor of ``kind`` (None for "none"), shut down on exit.

    ``dask`` connects to the scheduler at ``address`` or starts a LocalCluster of ``workers``
    single-threaded worker processes (needs ``pip install "dask[distributed]"``).
    """
    if kind == "none":
        yield None
    elif kind == "threads":
        with ThreadPoolExecutor(max_workers=workers) as pool:
            yield pool
    elif kind == "processes":
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield pool
    elif kind == "dask":
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise ValueError('--executor dask needs dask.distributed: pip install "dask[distributed]"') from None
        if address:
            with Client(address) as client:
                yield client
        else:
            with LocalCluster(n_workers=workers or 2, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster, Client(cluster) as client:
                yield client
    else:
        raise ValueError(f"unknown executor {kind!r} (expected one of {', '.join(EXECUTORS)})")
