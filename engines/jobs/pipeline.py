"""A folder job on this machine: decoding, inference and encoding overlap.

    reader thread --(bounded queue)--> N inference threads, one engine each --(bounded queue)-->
    the calling thread: encode, write, record

The queues are bounded, so memory stays flat however many images there are; the calling thread
does the writing, so Ctrl-C lands where the manifest is kept and stops the others cleanly.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from msn_deploy.engines.jobs.tree import Task
from msn_deploy.engines.jobs.work import ImageOptions, failure, upscale_image
from msn_deploy.engines.media.images import read_image
from msn_deploy.engines.media.stages import END, Stage, get, put, raise_stage_error
from msn_deploy.engines.media.upscaled import Upscaled, encode_upscaled
from msn_deploy.engines.runtime.base import Engine
from msn_deploy.msn import MSNError

log = logging.getLogger(__name__)

QUEUED_PER_WORKER = 2  # decoded images waiting per inference thread: enough to hide a slow decode


@dataclass
class _Failed:
    why: str


# What a runner hands back for each task: the encoded output, or why it failed; the seconds it took;
# and the Ray node that did it (None on this machine).
Finish = Callable[[Task, bytes | None, str | None, float, str | None], None]


def run_pipelined(tasks: list[Task], engines_: list[Engine], options: ImageOptions, finish: Finish) -> None:
    """Upscale `tasks` with one inference thread per engine; `finish` is called in this thread for
    each task as it completes (in completion order). Bad files fail alone: `finish` gets the reason."""
    stop = threading.Event()
    decoded: queue.Queue = queue.Queue(maxsize=QUEUED_PER_WORKER * len(engines_))
    done: queue.Queue = queue.Queue(maxsize=QUEUED_PER_WORKER * len(engines_))

    def read() -> None:
        for task in tasks:
            started = time.perf_counter()
            try:
                item: object = read_image(task.src, options.max_pixels)
            except MSNError as exc:
                item = _Failed(failure(task.src, exc))
            if not put(decoded, (task, item, started), stop):
                return
        for _ in engines_:
            put(decoded, END, stop)

    in_engine: set[Path] = set()  # inputs inside an engine call now

    def infer(engine: Engine) -> None:
        while (entry := get(decoded, stop)) is not END:
            task, item, started = entry
            if not isinstance(item, _Failed):
                in_engine.add(task.src)
                try:
                    item = upscale_image(engine, item, options)
                except MSNError as exc:
                    item = _Failed(failure(task.src, exc))
                finally:
                    in_engine.discard(task.src)
            put(done, (task, item, started), stop)
        put(done, END, stop)

    threads = [Stage("read", read)] + [Stage(f"infer-{i}", lambda e=e: infer(e)) for i, e in enumerate(engines_)]
    for thread in threads:
        thread.start()
    try:
        ended = 0
        while ended < len(engines_):
            try:
                entry = done.get(timeout=0.2)
            except queue.Empty:
                raise_stage_error(threads)
                continue
            if entry is END:
                ended += 1
                continue
            task, item, started = entry
            _finish(task, item, started, finish)
        raise_stage_error(threads)
    except BaseException:
        # Not joined: an inference thread ends after its current image, and an engine call cannot
        # be cut short (a large image takes tens of seconds; Ctrl-C must not wait for it).
        stop.set()
        busy = sorted(map(str, list(in_engine)))  # list(): one atomic copy of a set other threads change
        if busy:
            log.warning("dropped %d image(s) still in the engine, not waiting for them (an engine call cannot be cut "
                        "short): %s", len(busy), ", ".join(busy))
        raise
    for thread in threads:
        thread.join()


def _finish(task: Task, item: Upscaled | _Failed, started: float, finish: Finish) -> None:
    if isinstance(item, _Failed):
        finish(task, None, item.why, time.perf_counter() - started, None)
        return
    try:
        encoded = encode_upscaled(task.dst.suffix, item)
    except MSNError as exc:
        finish(task, None, f"{task.dst.name}: {exc}", time.perf_counter() - started, None)
        return
    finish(task, encoded, None, time.perf_counter() - started, None)
