"""Where a command's time goes: `msn-upscale` as a person runs it (one photo, a folder of 20
photos of mixed sizes, `--help`), and the one photo's path stage by stage in a fresh process
(interpreter start, import, decode, engine load, compile or cached-shape load, infer, encode).

    msn-command-bench --model best.pth --image photo.png --out reports/command

Each run is a new process with the caches on disk warm (the command runs once first), `--runs`
times round-robin; median and range. The stages are the library calls the command makes, in
the same order; what the whole command takes beyond their sum is the job's own planning and
writing ("the rest").
"""

from __future__ import annotations

import argparse
import itertools
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from msn_deploy.msn import MissingFileError
from msn_deploy.msn.cli import hw_size, positive_int, run_cli
from msn_deploy.msn.files import make_output_folder
from msn_deploy.msn.formats.kinds import read_artifact_header
from msn_deploy.validate.core.fresh_process import json_from_fresh_process
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.command_bench")

FOLDER_PHOTOS = 20
# LR (height, width) of the folder's photos: landscape, portrait and square, small to 360p
FOLDER_SHAPES = ((120, 160), (160, 120), (200, 200), (240, 320), (320, 240), (360, 640), (640, 360), (270, 480))
UPSCALE = "import sys; from msn_deploy.engines.upscale import main; sys.exit(main())"  # as the console script

# One photo through the calls `msn-upscale` makes, each timed; infer runs twice: the first run
# also compiles the shape (or loads it from the disk cache).
_STAGES = """
import json, sys, time
from pathlib import Path
marks = [time.perf_counter()]
from msn_deploy import engines
from msn_deploy.engines.jobs.work import ImageOptions, upscale_image
from msn_deploy.engines.media.images import read_image
from msn_deploy.engines.media.upscaled import encode_upscaled
from msn_deploy.msn.cli import exit_process
marks.append(time.perf_counter())
image = read_image(Path(sys.argv[1]))
marks.append(time.perf_counter())
engine = engines.load(sys.argv[2])
marks.append(time.perf_counter())
upscale_image(engine, image, ImageOptions())
marks.append(time.perf_counter())
result = upscale_image(engine, image, ImageOptions())
marks.append(time.perf_counter())
encode_upscaled(".png", result)
marks.append(time.perf_counter())
steps = [b - a for a, b in zip(marks, marks[1:])]
print(json.dumps({"timed": marks[-1] - marks[0], "stages": {
    "import": steps[0], "decode": steps[1], "load": steps[2], "compile or cached shape": steps[3] - steps[4],
    "infer": steps[4], "encode": steps[5]}}))
exit_process(0)  # as the command ends, so that "interpreter start and exit" is what the command pays
"""


def seconds_of(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, timeout=1800)
    return time.perf_counter() - start


def stage_seconds(image: Path, model: str) -> dict[str, float]:
    start = time.perf_counter()
    run = json_from_fresh_process(_STAGES, str(image), model)
    # Python's own start-up (before the first mark) and the exit, which the whole command pays too
    return {"interpreter start and exit": time.perf_counter() - start - run["timed"], **run["stages"]}


def spread(seconds: list[float]) -> dict[str, float]:
    return {"median_s": float(np.median(seconds)), "min_s": min(seconds), "max_s": max(seconds)}


def make_folder(folder: Path, source: np.ndarray) -> None:
    """FOLDER_PHOTOS photos of mixed sizes: the source photo resized to each of FOLDER_SHAPES in turn."""
    folder.mkdir()
    for i in range(FOLDER_PHOTOS):
        h, w = FOLDER_SHAPES[i % len(FOLDER_SHAPES)]
        cv2.imwrite(str(folder / f"photo{i:02d}.png"), cv2.resize(source, (w, h), interpolation=cv2.INTER_AREA))


def measure(model: str, image: Path, runs: int, work: Path) -> dict:
    """Whole commands and stages, round-robin `runs` times after one warm-up of each."""
    folder = work / "photos"
    make_folder(folder, cv2.imread(str(image)))
    outputs = itertools.count()
    commands: dict[str, Callable[[], float]] = {
        "one photo": lambda: seconds_of([sys.executable, "-c", UPSCALE, str(image), "-o",
                                         str(work / f"out{next(outputs)}.png"), "--model", model]),
        f"folder of {FOLDER_PHOTOS} photos": lambda: seconds_of([sys.executable, "-c", UPSCALE, str(folder), "-o",
                                                                  str(work / f"out{next(outputs)}") + "/",
                                                                  "--model", model]),
        "--help": lambda: seconds_of([sys.executable, "-c", UPSCALE, "--help"]),
    }
    whole: dict[str, list[float]] = {name: [] for name in commands}
    stages: list[dict[str, float]] = []
    for run in range(runs + 1):  # the first round warms the caches on disk and is not counted
        for name, command in commands.items():
            took = command()
            if run:
                whole[name].append(took)
        took_stages = stage_seconds(image, model)
        if run:
            stages.append(took_stages)
        log.info("round %d of %d done", run, runs)
    return {
        "whole": {name: spread(seconds) for name, seconds in whole.items()},
        "stages": {name: spread([s[name] for s in stages]) for name in stages[0]},
    }


def markdown(data: dict) -> str:
    def cells(rows: dict[str, dict[str, float]]) -> list[list[str]]:
        return [[name, f"{r['median_s']:.2f}", f"{r['min_s']:.2f}-{r['max_s']:.2f}"] for name, r in rows.items()]

    one_photo = data["whole"]["one photo"]["median_s"]
    staged = sum(r["median_s"] for r in data["stages"].values())
    lines = [f"# The whole command: {data['image']} ({data['lr']} LR), {data['model']}", "",
             machine_line(data["machine"]), "", f"Median of {data['runs']} runs each, caches warm.", "",
             *markdown_table(["command", "median s", "range s"], cells(data["whole"])), "",
             "## One photo, stage by stage (fresh process)", "",
             *markdown_table(["stage", "median s", "range s"], cells(data["stages"])),
             f"| the whole command less these (planning, writing; below 0 where its pipeline overlaps them) "
             f"| {one_photo - staged:.2f} | |", ""]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-command-bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="official", help="checkpoint, known name or graph (default: official)")
    p.add_argument("--image", type=Path, required=True, help="the photo (the folder's photos are it at other sizes)")
    p.add_argument("--size", type=hw_size, metavar="HxW", default=(360, 640),
                   help="LR size the photo is resized to first (default 360x640)")
    p.add_argument("--runs", type=positive_int, default=3, help="timed runs of each command (default 3)")
    p.add_argument("--out", type=Path, required=True, help="report folder (command.json, command.md)")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> None:
        make_output_folder(args.out)
        if not args.image.is_file():
            raise MissingFileError(f"--image {args.image} does not exist")
        read_artifact_header(args.model)  # a missing or foreign model fails here, not in every run
        with tempfile.TemporaryDirectory(prefix="msn-command-bench-") as tmp:
            work_dir = Path(tmp)
            source = cv2.imread(str(args.image))
            if source is None:
                raise MissingFileError(f"--image {args.image} is not an image")
            photo = work_dir / "photo.png"
            cv2.imwrite(str(photo), cv2.resize(source, args.size[::-1], interpolation=cv2.INTER_AREA))
            data = {"model": str(args.model), "image": args.image.name, "lr": f"{args.size[0]}x{args.size[1]}",
                    "runs": args.runs, "machine": machine_info(),
                    **measure(str(args.model), photo, args.runs, work_dir)}
        json_path, _ = write_report(args.out, "command", data, markdown(data))
        print(markdown(data))
        log.info("report in %s", json_path.parent)

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
