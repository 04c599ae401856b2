"""Long videos in parallel segments: the video stream is cut at keyframes into segments of about
S seconds, each is upscaled on its own (a local process, or a Ray task) into a video-only file,
and the files are joined by remuxing, with the audio, subtitle and data streams copied once
from the source.

    .clip_x4.mkv.parts/plan.json      what the parts were made with (settings, source, windows)
    .clip_x4.mkv.parts/0003.mkv       a finished segment (written atomically) ...
    .clip_x4.mkv.parts/0003.json      ... and its frames' timestamps: the part is done once this exists

A rerun with the same settings keeps the finished parts (after Ctrl-C or a crash it goes on where
it stopped); the folder is removed once the output is written.

Every frame keeps its input timestamp exactly: segment files are Matroska (any codec, whatever
its reordering), whose millisecond timestamps are mapped back, in order, onto the timestamps the
segment's frames had in the input; decoding timestamps are rebuilt from those with the
encoder's reordering depth, so they increase across the joins.
"""

from __future__ import annotations

import bisect
import heapq
import json
import logging
import multiprocessing
import shutil
import signal
import tempfile
import time
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from msn_deploy.engines import runtime
from msn_deploy.engines.jobs.manifest import InputState, settings_digest
from msn_deploy.engines.media.video import (
    VideoError,
    VideoOptions,
    VideoReport,
    Window,
    copy_streams,
    log_reuse,
    muxer_for,
    muxer_options,
    open_video,
    truncation,
    upscale_video,
)
from msn_deploy.engines.runtime.model_files import ModelFiles
from msn_deploy.engines.runtime.targets import Target
from msn_deploy.msn.files import atomic_output, atomic_write_bytes, check_writable, refuse_overwriting_inputs

log = logging.getLogger("msn.upscale")

PART_SUFFIX = ".mkv"
WORKERS = 2  # local processes when none are asked for


@dataclass(frozen=True)
class VideoProbe:
    """What the packets of the video stream say, read without decoding."""

    time_base: Fraction
    keyframes: list[int]  # keyframe pts, in order
    pts: list[int]  # every frame's pts, in order
    truncated: str | None

    def frames_in(self, windows: list[Window]) -> list[int]:
        """Frames per window, for the progress bar."""
        bounds = [bisect.bisect_left(self.pts, w.start) if w.start is not None else 0 for w in windows]
        return [b - a for a, b in zip(bounds, [*bounds[1:], len(self.pts)])]


@dataclass(frozen=True)
class SegmentJob:
    """How the segments of one video are made (the fields a part's plan records)."""

    model: ModelFiles
    target: Target  # resolved for the model
    options: VideoOptions
    seconds: float
    workers: int = WORKERS
    ray: str | None = None  # None: local processes; "local" or HOST:PORT: Ray tasks

    def digest(self, windows: list[Window]) -> str:
        options = asdict(self.options) | {"target": repr(self.options.target)}
        fields = {"model": self.model.sha256, "backend": self.target.backend, "precision": self.target.precision,
                  "options": options, "windows": [[w.start, w.end] for w in windows]}
        return settings_digest(fields)


@dataclass
class SegmentsReport:
    frames: int = 0
    reused: int = 0
    corrupt_packets: int = 0
    segments: int = 0
    kept: int = 0  # finished segments of an earlier run that were kept
    seconds: float = 0.0
    truncated: str | None = None
    copied_streams: list[str] | None = None

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def probe_video(src: Path) -> VideoProbe:
    container, stream = open_video(src)
    try:
        if container.format.name == "avi":
            raise VideoError(f"{src}: AVI stores no presentation timestamps to cut segments by; remux it first "
                             "(ffmpeg -i IN.avi -c copy OUT.mkv) or leave out --segment-seconds")
        keyframes, pts = [], []
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream packet
                continue
            if packet.pts is None:
                raise VideoError(f"{src}: a video packet has no timestamp; remux it to .mkv first, or leave out "
                                 "--segment-seconds")
            pts.append(packet.pts)
            if packet.is_keyframe:
                keyframes.append(packet.pts)
        if not pts:
            raise VideoError(f"{src} has no video packets")
        return VideoProbe(stream.time_base, sorted(keyframes), sorted(pts),
                          truncation(container, stream, len(pts), max(pts)))
    finally:
        container.close()


def plan_windows(probe: VideoProbe, seconds: float) -> list[Window]:
    """Cut at the first keyframe at least `seconds` after the last cut; the first window starts
    at the beginning and the last runs to the end."""
    step = seconds / probe.time_base
    cuts: list[int] = []
    last = probe.keyframes[0] if probe.keyframes else 0
    for key in probe.keyframes[1:]:
        if key - last >= step:
            cuts.append(key)
            last = key
    bounds = [None, *cuts, None]
    return [Window(a, b) for a, b in zip(bounds, bounds[1:])]


def parts_folder(dst: Path) -> Path:
    return dst.parent / f".{dst.name}.parts"


def _prepare_parts(folder: Path, plan: dict) -> set[int]:
    """The parts already done with this very plan; parts of another plan are removed."""
    plan_file = folder / "plan.json"
    if plan_file.exists():
        try:
            earlier = json.loads(plan_file.read_text())
        except (OSError, ValueError):
            earlier = None
        if earlier == plan:
            return {int(p.stem) for p in folder.glob("*.json") if p.stem.isdigit()}
        log.info("%s holds parts made with other settings or another source; starting afresh", folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(plan_file, json.dumps(plan).encode())
    return set()


def _part_paths(folder: Path, index: int) -> tuple[Path, Path]:
    return folder / f"{index:04d}{PART_SUFFIX}", folder / f"{index:04d}.json"


def _part_record(report: VideoReport) -> dict:
    """What the join needs of a part besides its file (and what the summary counts)."""
    return {"frames": report.frames, "reused": report.reused, "corrupt_packets": report.corrupt_packets,
            "pts": report.pts, "rotation": report.rotation}


def _load_engine(job: SegmentJob, threads: int):
    """The worker's engine, with its share of the cores (the segment workers run side by side)."""
    return job.model.load(job.target, **job.target.thread_options(threads))


# A local worker process: the job and its engine, loaded once.
_WORKER: tuple[SegmentJob, object] | None = None


def _start_worker(job: SegmentJob, threads: int) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops the pool
    # SIGTERM from the parent ends a worker at once: a Python handler runs only in the main thread,
    # and the kernel may hand the signal to another (OpenVINO's, tqdm's) while the main thread
    # waits for a task where no signal reaches it, so the worker never ended. The parent removes
    # the part that was being written.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _WORKER = job, _load_engine(job, threads)


def _run_part(args: tuple[Path, Path, int, Window]) -> int:
    src, folder, index, window = args
    job, engine = _WORKER
    part, record = _part_paths(folder, index)
    report = upscale_video(engine, src, part, job.options, window, progress=False)
    atomic_write_bytes(record, json.dumps(_part_record(report)).encode())
    return index


def _run_local(job: SegmentJob, src: Path, folder: Path, todo: list[tuple[int, Window]], bar: tqdm,
               frames_of: dict[int, int]) -> None:
    workers = min(job.workers, len(todo))
    threads = runtime.share_of_cores(workers)
    context = multiprocessing.get_context("spawn")  # torch and OpenVINO threads do not survive fork
    pool = context.Pool(workers, initializer=_start_worker, initargs=(job, threads))
    try:
        for index in pool.imap_unordered(_run_part, [(src, folder, i, w) for i, w in todo]):
            bar.update(frames_of.get(index, 0))
        pool.close()
    except BaseException:
        pool.terminate()  # SIGTERM: the workers end where they are
        pool.join()
        for unfinished in folder.glob(".*.tmp"):  # the parts (and records) they were writing
            unfinished.unlink(missing_ok=True)
        raise
    pool.join()


def _part_on_ray(job: SegmentJob, src: str, window: Window) -> tuple[bytes, dict]:
    """A Ray task: upscale one window on whichever node runs it; the part comes back as bytes."""
    engine = _load_engine(job, threads=1)  # a task takes one CPU
    with tempfile.TemporaryDirectory(prefix="msn-part-") as folder:
        part = Path(folder) / f"part{PART_SUFFIX}"
        report = upscale_video(engine, Path(src), part, job.options, window, progress=False)
        return part.read_bytes(), _part_record(report)


def _run_on_ray(job: SegmentJob, src: Path, folder: Path, todo: list[tuple[int, Window]], bar: tqdm,
                frames_of: dict[int, int]) -> None:
    import ray

    from msn_deploy.engines.jobs.ray_cluster import connect

    connect(job.ray)
    try:
        gpu = job.target.device.startswith("cuda")
        task = ray.remote(num_cpus=0 if gpu else 1, num_gpus=1 if gpu else 0, max_retries=3)(_part_on_ray)
        job_ref = ray.put(job)
        pending = {task.remote(job_ref, str(src.resolve()), window): index for index, window in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(ready[0])
            data, record = ray.get(ready[0])
            part, meta = _part_paths(folder, index)
            atomic_write_bytes(part, data)
            atomic_write_bytes(meta, json.dumps(record).encode())
            bar.update(frames_of.get(index, 0))
    finally:
        ray.shutdown()


def upscale_video_in_segments(job: SegmentJob, src: Path, dst: Path) -> SegmentsReport:
    """Upscale `src` into `dst` in segments of about `job.seconds`; see the module docstring."""
    check_writable(dst)
    refuse_overwriting_inputs([dst], [src])
    started = time.perf_counter()
    probe = probe_video(src)
    windows = plan_windows(probe, job.seconds)
    state = InputState.of(src)
    plan = {"settings": job.digest(windows), "source": [str(src.resolve()), state.size, state.mtime_ns]}
    folder = parts_folder(dst)
    done = _prepare_parts(folder, plan)
    report = SegmentsReport(segments=len(windows), kept=len(done), truncated=probe.truncated)
    if report.kept:
        log.info("%d of %d segments are done already (%s)", report.kept, len(windows), folder)
    todo = [(i, w) for i, w in enumerate(windows) if i not in done]
    frames_of = dict(enumerate(probe.frames_in(windows)))
    with tqdm(total=len(probe.pts), unit="frame", desc=f"{src.name} ({len(windows)} segments)",
              dynamic_ncols=True) as bar:
        bar.update(sum(frames_of.get(i, 0) for i in done))
        if todo:
            log.info("%d segments of about %g s to upscale on %s", len(todo), job.seconds,
                     "Ray" if job.ray else f"{min(job.workers, len(todo))} processes")
            try:
                (_run_on_ray if job.ray else _run_local)(job, src, folder, todo, bar, frames_of)
            except KeyboardInterrupt:
                finished = len(list(folder.glob("[0-9]*.json")))
                log.error("interrupted with %d of %d segments done (kept in %s); run the same command again to go "
                          "on", finished, len(windows), folder)
                raise
    records = [json.loads(_part_paths(folder, i)[1].read_text()) for i in range(len(windows))]
    report.copied_streams = join_parts(src, [_part_paths(folder, i)[0] for i in range(len(windows))],
                                       [r["pts"] for r in records], dst, records[0]["rotation"])
    report.frames = sum(r["frames"] for r in records)
    report.reused = sum(r["reused"] for r in records)
    report.corrupt_packets = sum(r["corrupt_packets"] for r in records)
    shutil.rmtree(folder)
    report.seconds = time.perf_counter() - started
    log_reuse(src, report.reused, report.frames)
    if report.truncated:
        log.warning("%s looks truncated: %s", src, report.truncated)
    return report


def _video_packets(parts: list[Path], pts_of_parts: list[list[int]], time_base: Fraction):
    """The parts' packets in decoding order, with their input timestamps restored (see the module
    docstring): yields (seconds, packet) with packet.pts / dts in `time_base`."""
    import av

    step = _smallest_step([p for pts in pts_of_parts for p in pts])
    last_dts = None
    for part, expected in zip(parts, pts_of_parts):
        container = av.open(str(part))
        try:
            stream = container.streams.video[0]
            packets = [p for p in container.demux(stream) if p.size]
            if len(packets) != len(expected):
                raise VideoError(f"{part} holds {len(packets)} frames, {len(expected)} were written; delete "
                                 f"{part.parent} and run again")
            rank = sorted(range(len(packets)), key=lambda k: packets[k].pts)
            display = sorted(expected)
            new_pts = [0] * len(packets)
            for position, k in enumerate(rank):
                new_pts[k] = display[position]
            # Reordering depth: how far a packet is decoded after its place in display order.
            depth = max((k - position for position, k in enumerate(rank)), default=0)
            for k, packet in enumerate(packets):
                dts = display[k - depth] if k >= depth else display[0] - (depth - k) * step
                if last_dts is not None and dts <= last_dts:
                    dts = last_dts + 1
                if dts > new_pts[k]:
                    raise VideoError(f"{part}: cannot order its packets for joining (decoding timestamp after "
                                     "presentation); use one process (leave out --segment-seconds)")
                packet.pts, packet.dts, packet.time_base = new_pts[k], dts, time_base
                last_dts = dts
                yield float(dts * time_base), packet
        finally:
            container.close()


def _smallest_step(pts: list[int]) -> int:
    ordered = sorted(set(pts))
    return min((b - a for a, b in zip(ordered, ordered[1:])), default=1)


def _other_packets(container, copied: dict[int, object]):
    streams = [s for s in container.streams if s.index in copied]
    if not streams:
        return
    for packet in container.demux(*streams):
        if packet.dts is None:
            continue
        yield float(packet.dts * packet.time_base), packet


def join_parts(src: Path, parts: list[Path], pts_of_parts: list[list[int]], dst: Path, rotation: int = 0) -> list[str]:
    """Remux the parts' video and the source's other streams into `dst` (atomically), packets
    interleaved by decoding time; returns the copied streams ("audio:aac", ...)."""
    import av

    container, in_video = open_video(src)
    first = av.open(str(parts[0]))
    try:
        with atomic_output(dst) as tmp:
            output = av.open(str(tmp), "w", format=muxer_for(dst), options=muxer_options(dst))
            try:
                out_video = output.add_stream_from_template(first.streams.video[0])
                out_video.time_base = in_video.time_base
                out_video.metadata.update({k: v for k, v in in_video.metadata.items() if k in ("language", "title")})
                if rotation:
                    out_video.set_display_rotation(rotation)
                copied = copy_streams(container, output, in_video, dst)
                video = ((t, 0, i, p) for i, (t, p) in enumerate(_video_packets(parts, pts_of_parts,
                                                                                 in_video.time_base)))
                others = ((t, 1, i, p) for i, (t, p) in enumerate(_other_packets(container, copied)))
                for _, kind, _, packet in heapq.merge(video, others, key=lambda e: e[:3]):
                    packet.stream = out_video if kind == 0 else copied[packet.stream.index]
                    output.mux(packet)
            finally:
                output.close()
        return [f"{s.type}:{s.codec_context.name}" for s in copied.values()]
    finally:
        first.close()
        container.close()
