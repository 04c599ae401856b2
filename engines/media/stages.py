"""Threads joined by bounded queues, for the pipelines that overlap decoding, inference and
encoding (engines.media.video, engines.jobs.pipeline): a stage keeps an exception for the thread that
runs the pipeline to raise, and no put or get blocks once the pipeline is stopping."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from msn_deploy.msn.cli import WorkerThread

END = object()  # put after a stage's last item; what `get` returns once the pipeline stops


class Stage(WorkerThread):
    def __init__(self, name: str, target: Callable[[], None]) -> None:
        super().__init__(name)
        self._work = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as exc:  # noqa: BLE001 - raised again by the thread running the pipeline
            self.error = exc


def put(q: queue.Queue, item: object, stop: threading.Event) -> bool:
    """Put unless the pipeline is stopping (then give up, so no thread blocks forever)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def get(q: queue.Queue, stop: threading.Event) -> object:
    while not stop.is_set():
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            continue
    return END


def raise_stage_error(stages: list[Stage]) -> None:
    for stage in stages:
        if stage.error is not None:
            raise stage.error
