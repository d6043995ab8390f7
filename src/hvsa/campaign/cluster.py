"""Where a campaign's heavy steps run: in the flow's process, or on a Dask cluster.

``campaign.task_runner`` in params.yaml:

- ``null`` (the default): every step in the flow's process, a thread per video — nothing to
  start, and torch uses every core from whichever thread computes;
- ``local``: a Dask ``LocalCluster`` of ``campaign.dask_workers`` processes on this machine
  (127.0.0.1 only, no dashboard), started by the campaign flow and stopped when it ends;
- ``tcp://HOST:8786``: the scheduler of a cluster already running (``dask scheduler`` and
  ``dask worker tcp://HOST:8786`` on the machines), whose workers see the workspace at the same
  path (a shared file system) and have hvsa installed.

The heavy steps (:data:`HEAVY`: optical flow, superpixels, prediction, fine-tuning, fusion) are
submitted to the cluster as Prefect tasks through prefect-dask's ``DaskTaskRunner``; the light
ones (advance, select, annotate, commit, MLflow) stay in the flow's process, beside the
workspace's git repository. A step in ``campaign.gpu_steps`` is sent only to workers that
declare a ``GPU`` resource (``dask worker … --resources GPU=1``), so fine-tuning can go to a GPU
machine while flow and fusion run on CPU workers.

Why Dask rather than Ray: both have a Prefect integration (prefect-dask, prefect-ray); Dask
installs as pure-Python wheels into hvsa's environment, a local cluster is a few processes that
live as long as the flow, a real one is a single address, and it sends nothing off the machine
(Ray runs its own GCS and dashboard processes and collects usage statistics unless told not to).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import get_args

from hvsa.config import Config, HeavyStep
from hvsa.errors import require_extra

HEAVY = get_args(HeavyStep)  # the steps params.yaml may name in campaign.gpu_steps


@contextlib.contextmanager
def scheduler(cfg: Config) -> Iterator[str | None]:
    """The Dask scheduler address the video flows submit heavy steps to, for as long as the
    campaign flow runs: ``None`` (no cluster), a local cluster's (started here and closed on
    exit), or the configured address."""
    runner = cfg.campaign.task_runner
    if runner is None:
        yield None
        return
    require_extra("dask")
    if runner != "local":
        yield runner
        return
    from distributed import LocalCluster

    workers = cfg.campaign.dask_workers
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address=None, env={"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads},
    )  # fmt: skip
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def task_runner(address: str):
    """prefect-dask's task runner on the cluster at ``address``."""
    from prefect_dask import DaskTaskRunner

    return DaskTaskRunner(address=address)


def resources(cfg: Config, step: str) -> contextlib.AbstractContextManager:
    """Dask's annotation that sends ``step`` to GPU workers only, when configured so."""
    if step not in cfg.campaign.gpu_steps:
        return contextlib.nullcontext()
    import dask

    return dask.annotate(resources={"GPU": 1})
