"""A folder job: plan every output and check everything before any model loads, then upscale
what is not done yet (on this machine, or on a Ray cluster), keeping the manifest as it goes.

A rerun of the same command skips what the manifest says is done with the same settings and an
unchanged input, redoes what failed or was interrupted, and refuses to mix settings: outputs made
with other settings are a ManifestError (exit 2) unless `overwrite`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from msn_deploy.engines import runtime
from msn_deploy.engines.jobs.manifest import (
    DONE,
    FAILED,
    MANIFEST_NAME,
    InputState,
    JobSettings,
    Manifest,
    ManifestError,
)
from msn_deploy.engines.jobs.tree import Task, find_tasks
from msn_deploy.engines.jobs.work import ImageOptions, stored_size
from msn_deploy.engines.media.images import IMAGE_SUFFIXES, read_header
from msn_deploy.engines.runtime.base import Engine
from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.engines.runtime.tiling import check_tiling
from msn_deploy.msn import MissingFileError, PathError, UsageError
from msn_deploy.msn.cli import interrupts_deferred
from msn_deploy.msn.files import atomic_output, check_folder_writable, check_writable
from msn_deploy.msn.formats.kinds import read_artifact_header

log = logging.getLogger("msn.upscale")


@dataclass
class FolderJob:
    """What `msn-upscale` does with image inputs; see `run_folder_job`."""

    inputs: list[Path]
    output: Path  # a folder; or the output image's name when there is one input
    model: str = "official"
    runs_on: Target = Target()  # the backend, device and precision asked for ("auto": by file type)
    options: ImageOptions = field(default_factory=ImageOptions)
    suffix: str | None = None  # output format (".png", ".jpg"); None keeps each input's
    recursive: bool = False
    overwrite: bool = False
    workers: int | None = None  # engines at once: threads here (default 1), actors on Ray (default: one per CPU)
    ray: str | None = None  # None: this machine; "local": a Ray started for the job; else HOST:PORT to join
    output_is_folder: bool = False  # the output was typed ending in / (a folder even with one input)


@dataclass
class JobReport:
    written: list[Path] = field(default_factory=list)
    failed: dict[Path, str] = field(default_factory=dict)  # input -> why
    done_before: int = 0  # skipped: the manifest says done, with these settings
    kept: list[Path] = field(default_factory=list)  # outputs that existed without a record (no --overwrite)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        return len(self.written) / self.seconds if self.seconds else 0.0


@dataclass
class _Plan:
    todo: list[Task]
    settings: JobSettings
    model: ModelFiles
    manifest: Manifest | None
    report: JobReport
    target: Target


def writes_one_file(output: Path, inputs: int, as_folder: bool = False) -> bool:
    """Whether `output` names the one output image (rather than a folder of outputs)."""
    return inputs == 1 and output.suffix.lower() in IMAGE_SUFFIXES and not as_folder


def prepare_output(output: Path, to_file: bool, as_folder: bool = False) -> None:
    """Check (and create) the output location before any model is loaded or image is read.

    A name with a suffix that is not an image format is refused rather than made a folder
    (`-o result.xyz` is never meant as one), unless it was typed ending in / (`as_folder`)."""
    if to_file:
        check_writable(output)
        return
    if output.exists() and not output.is_dir():
        raise PathError(f"output {output} is an existing file, not a folder; give a folder (or one image "
                        f"name ending in {', '.join(IMAGE_SUFFIXES)} for a single input)")
    if output.suffix and not as_folder and not output.is_dir():
        raise UsageError(f"output {output} ends in {output.suffix}, which is not an image format this tool writes "
                         f"({', '.join(IMAGE_SUFFIXES)}), or there are several inputs; give a folder (a name without "
                         "a suffix, or ending in /)")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PathError(f"cannot create output folder {output} ({exc.strerror})") from None
    check_folder_writable(output)


def _single_input(inputs: list[Path]) -> bool:
    return len(inputs) == 1 and inputs[0].is_file()


def plan_job(job: FolderJob) -> _Plan:
    """Every check a folder job makes before a model loads; raises MSNError subclasses."""
    if job.workers is not None and job.workers < 1:
        raise UsageError(f"workers must be 1 or more, got {job.workers}")
    if job.options.tile is not None:
        check_tiling(job.options.tile, job.options.overlap)
    for path in job.inputs:  # before the model, which may have to be downloaded
        if not path.exists():
            raise MissingFileError(f"input {path} does not exist")
    to_file = _single_input(job.inputs) and writes_one_file(job.output, 1, job.output_is_folder)
    prepare_output(job.output, to_file, as_folder=job.output_is_folder)
    target = job.runs_on.resolve(job.model)  # by name: before a model is read
    header = read_artifact_header(target.runnable(job.model), target.precision)
    tasks = find_tasks(job.inputs, job.output, recursive=job.recursive, suffix=job.suffix, scale=header.scale,
                       to_file=to_file)
    if job.options.target is not None and len(tasks) == 1:  # one image: a target it cannot reach is bad usage
        src = tasks[0].src
        image = read_header(src.read_bytes(), str(src), job.options.max_pixels)
        swapped = image.orientation in (5, 6, 7, 8)
        job.options.target.output_size(image.width if swapped else image.height,
                                       image.height if swapped else image.width, header.scale)
    model = ModelFiles.read(job.model)
    settings = JobSettings(model.sha256, target.backend, header.precision, header.scale, job.options.tile,
                           job.options.overlap, job.suffix, _target_text(job))
    manifest = None if to_file else Manifest(job.output / MANIFEST_NAME, claim=True)
    report = JobReport()
    try:
        todo = _still_to_do(tasks, job, settings, manifest, report)
    except BaseException:
        if manifest is not None:
            manifest.close()
        raise
    # Images of one size together: a per-shape backend (OpenVINO) compiles each size once.
    todo.sort(key=lambda t: stored_size(t.src))
    return _Plan(todo, settings, model, manifest, report, target)


def _target_text(job: FolderJob) -> str | None:
    target = job.options.target
    return None if target is None else f"{target.width}x{target.height}{'!' if target.exact else ''}"


def _still_to_do(tasks: list[Task], job: FolderJob, settings: JobSettings, manifest: Manifest | None,
                 report: JobReport) -> list[Task]:
    inputs = {t.src.resolve() for t in tasks}
    todo, conflicts = [], []
    for task in tasks:
        if task.dst.resolve() in inputs:
            report.failed[task.src] = f"{task.src}: its output would overwrite an input; choose another -o"
            log.error("%s", report.failed[task.src])
            continue
        if manifest is not None and task.dst.exists() and not job.overwrite:  # --overwrite: redo everything
            if manifest.is_done(task.key, _state_or_zero(task.src), settings, task.dst):
                report.done_before += 1
                continue
            other = manifest.made_otherwise(task.key, settings)
            if other is not None:
                conflicts.append((task, other))
                continue
        if task.dst.exists() and manifest is not None and task.key not in manifest.latest \
                and manifest.cut_off(task.key):
            log.info("%s was written by a run cut off before it recorded it; it is made again", task.dst)
        elif task.dst.exists() and not job.overwrite and (manifest is None or task.key not in manifest.latest):
            log.warning("%s exists; skipping (use --overwrite)", task.dst)
            report.kept.append(task.dst)
            continue
        todo.append(task)
    if conflicts:
        task, other = conflicts[0]
        differs = manifest.difference(other, settings)
        raise ManifestError(
            f"{len(conflicts)} outputs in {job.output} were made with other settings ({differs}), e.g. {task.dst}; "
            "rerun with those settings to finish that job, use --overwrite to replace them, or choose another -o")
    if report.done_before:
        log.info("%d of %d images are done already (manifest %s); %d to do", report.done_before, len(tasks),
                 manifest.path, len(todo))
    return todo


def load_engines(job: FolderJob, model: ModelFiles, target: Target) -> list[Engine]:
    """One engine per worker; OpenVINO and ONNX Runtime engines share the cores between them."""
    workers = job.workers or 1
    cores = len(os.sched_getaffinity(0))
    if target.device == "cpu" and workers > cores:
        # Each engine holds its own weights and buffers (measured: 99 engines 1.86 GB vs 0.41 GB) and
        # more engines than cores only take turns.
        log.warning("--workers %d is more than the %d CPU cores here; using %d", workers, cores, cores)
        workers = cores
    options = target.thread_options(runtime.share_of_cores(workers) if workers > 1 else None)
    return [model.load(target, **options) for _ in range(workers)]


def run_folder_job(job: FolderJob) -> JobReport:
    """Upscale every image of `job` not done yet; each output written atomically and recorded in
    the manifest (`MANIFEST_NAME` in the output folder) as it finishes. A file that fails is
    reported (and recorded) and the rest go on. Ctrl-C stops after the images in hand are
    recorded, and says how far it got; a rerun goes on from there."""
    plan = plan_job(job)
    report = plan.report
    if not plan.todo:
        log.info("nothing to do: every output is there")
        if plan.manifest is not None:
            plan.manifest.close()
        return report
    if plan.manifest is not None:
        plan.manifest.open(plan.settings)
    started = time.perf_counter()
    bar = tqdm(total=len(plan.todo), unit="img", desc="upscaling", dynamic_ncols=True, disable=len(plan.todo) == 1)

    def record(task: Task, status: str, seconds: float, error: str | None, node: str | None,
               output_size: int | None = None) -> None:
        if plan.manifest is not None:
            plan.manifest.record(task.key, task.src, _state_or_zero(task.src), plan.settings, status, seconds,
                                 error, node, output_size)

    def finish(task: Task, encoded: bytes | None, error: str | None, seconds: float, node: str | None) -> None:
        if error is None:
            try:
                # Recorded before the rename: a crash between the two leaves no output, so a rerun
                # redoes it; never an output that the manifest does not know.
                with interrupts_deferred():  # Ctrl-C never leaves a record without its output
                    _write_new(task.dst, encoded, lambda: record(task, DONE, seconds, None, node, len(encoded)))
            except OSError as exc:
                error = f"{task.dst} cannot be written ({exc.strerror or exc})"
        if error is None:
            report.written.append(task.dst)
            log.debug("%s -> %s", task.src, task.dst)
        else:
            report.failed[task.src] = error
            log.error("%s", error)
            record(task, FAILED, seconds, error, node)
        bar.update()

    try:
        with logging_redirect_tqdm():
            _run(plan, job, finish)
    except KeyboardInterrupt:
        log.error("interrupted after %d of %d images (%d written, %d failed); run the same command again to go on",
                  len(report.written) + len(report.failed), len(plan.todo), len(report.written), len(report.failed))
        raise
    finally:
        report.seconds = time.perf_counter() - started
        bar.close()
        if plan.manifest is not None:
            plan.manifest.close()
    log.info("%d written, %d failed, %d done before, %d kept; %.1f s (%.2f images/s)", len(report.written),
             len(report.failed), report.done_before, len(report.kept), report.seconds, report.images_per_s)
    return report


def _run(plan: _Plan, job: FolderJob, finish) -> None:
    if job.ray is None:
        from msn_deploy.engines.jobs.pipeline import run_pipelined

        run_pipelined(plan.todo, load_engines(job, plan.model, plan.target), job.options, finish)
    else:
        from msn_deploy.engines.jobs.on_ray import run_on_ray

        run_on_ray(plan.todo, plan.model, plan.target, job, finish)


def _write_new(path: Path, data: bytes, before_rename: Callable[[], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)  # a mirrored subfolder, made when its first image is done
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
        before_rename()


def _state_or_zero(path: Path) -> InputState:
    try:
        return InputState.of(path)
    except OSError:
        return InputState(0, 0)
