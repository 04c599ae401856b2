"""A folder job on a Ray cluster with Ray Data: the engine runs in a pool of actors (one per
worker, each taking one CPU, or one GPU with device="cuda"), the driver keeps the manifest.

What travels: rows carry an input's absolute path, so every node must see the inputs at the same
path (a shared file system); the model's bytes go to the actors with their constructor, so nodes
need only msn-deploy installed; outputs come back as encoded bytes and the driver writes them, so
only the driver needs the output folder. Images of mixed sizes do not fit Ray's tensor columns:
decoding, inference and encoding all happen inside the batch function.

An actor that dies (a killed process, a lost node) is restarted and its rows are run again (Ray
Data's actor pools retry by default); the driver records each image once, when it arrives.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from msn_deploy.engines.jobs.ray_cluster import connect
from msn_deploy.engines.jobs.tree import Task
from msn_deploy.engines.jobs.work import ImageOptions, failure, upscale_image
from msn_deploy.engines.media.images import read_image
from msn_deploy.engines.media.upscaled import encode_upscaled
from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.msn import MSNError, UsageError

log = logging.getLogger(__name__)

MAX_BLOCKS = 4096


class ImageUpscaler:
    """The Ray Data batch function: one engine per actor, one row per image."""

    def __init__(self, model: ModelFiles, target: Target, options: ImageOptions) -> None:
        import ray

        # One thread: an actor takes one CPU (or a share of one).
        threads = target.thread_options(1 if target.device == "cpu" else None)
        self.engine = model.load(target, **threads)
        self.options = options
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs, errors, seconds = [], [], []
        for src, suffix in zip(batch["src"], batch["suffix"]):
            started = time.perf_counter()
            encoded, error = b"", ""
            try:
                image = read_image(Path(src), self.options.max_pixels)
                encoded = encode_upscaled(str(suffix), upscale_image(self.engine, image, self.options))
            except MSNError as exc:  # the manifest records the node
                error = failure(src, exc)
            outputs.append(encoded)
            errors.append(error)
            seconds.append(time.perf_counter() - started)
        return {"index": batch["index"], "output": np.array(outputs, dtype=object),
                "error": np.array(errors, dtype=object), "seconds": np.array(seconds),
                "node": np.array([self.node] * len(outputs), dtype=object)}


def actor_resources(workers: int | None, device: str) -> tuple[int, dict[str, float]]:
    """(actors, resources per actor): --workers, else one actor per CPU (per GPU with
    device="cuda") of the cluster. More workers than the cluster has share its CPUs (GPUs), so
    that every actor of the pool can start."""
    import ray

    kind = "GPU" if device.startswith("cuda") else "CPU"
    available = ray.cluster_resources().get(kind, 0.0)
    if available <= 0:
        raise UsageError(f"the Ray cluster has no {kind}s for {'--device ' + device if kind == 'GPU' else 'workers'}")
    count = workers if workers is not None else max(1, int(available))
    share = min(1.0, available / count)
    return count, {"num_cpus": 0.0 if kind == "GPU" else share, "num_gpus": share if kind == "GPU" else 0.0}


def _stop_fetching(arriving: Iterator, threads: set[threading.Thread], timeout_s: float = 10.0) -> None:
    """Close Ray Data's row iterator and wait (bounded) for the threads it started. A Ctrl-C in
    `finish` leaves them fetching blocks, and ray.shutdown() under a thread inside ray.get makes
    Ray end the process with exit 1 instead of our 130 (3 of 4 runs interrupted there)."""
    arriving.close()
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def fail_the_missing(todo: list[Task], seen: set[int], finish) -> None:
    """Never a silent loss: each row whose result did not come back (its actor gone for good) fails."""
    for index in sorted(set(range(len(todo))) - seen):
        finish(todo[index], None, f"{todo[index].src}: no result came back from the Ray workers (one was lost); "
               "run the same command again to retry it", 0.0, None)


def run_on_ray(todo: list[Task], model: ModelFiles, target: Target, job, finish) -> None:
    """Run `todo` through an actor pool; `finish` is called on the driver as each image arrives."""
    import ray
    import ray.data

    connect(job.ray)
    try:
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver's own bar counts images
        context.actor_prefetcher_enabled = True  # no prefetching thread here (see _stop_fetching)
        workers, resources = actor_resources(job.workers, target.device)
        log.info("%d images on %d Ray workers", len(todo), workers)
        rows = [{"index": i, "src": str(t.src.resolve()), "suffix": t.dst.suffix} for i, t in enumerate(todo)]
        dataset = ray.data.from_items(rows, override_num_blocks=min(len(rows), MAX_BLOCKS)).map_batches(
            ImageUpscaler, batch_size=1, concurrency=workers, **resources,
            fn_constructor_kwargs={"model": model, "target": target, "options": job.options})
        seen: set[int] = set()
        threads_before = set(threading.enumerate())
        arriving = iter(dataset.iter_rows())
        try:
            for row in arriving:
                index = int(row["index"])
                if index in seen:  # a retried row whose first result also arrived
                    continue
                seen.add(index)
                error = row["error"] or None
                finish(todo[index], None if error else bytes(row["output"]), error, float(row["seconds"]),
                       str(row["node"]))
        except BaseException:
            _stop_fetching(arriving, set(threading.enumerate()) - threads_before)
            raise
        fail_the_missing(todo, seen, finish)
    finally:
        ray.shutdown()
