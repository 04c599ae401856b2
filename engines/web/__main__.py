"""Write the static in-browser upscaler (a thin command over engines.web.export_site).

    python -m msn_deploy.engines.web export site/                     # FP16 graph, the official weights
    python -m msn_deploy.engines.web export site/ --model best.pth --precision fp32
    python -m msn_deploy.engines.web export site/ --model msn_x4_fp32.onnx            # a graph from export/to_onnx.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from msn_deploy.engines.runtime.tiling import TILE_OVERLAP
from msn_deploy.engines.web.site import DEFAULT_MAX_PIXELS, DEFAULT_TILE, SiteOptions, export_site
from msn_deploy.msn.cli import add_precision_option, non_negative_int, positive_int, run_cli
from msn_deploy.msn.formats.precision import ARTIFACT_PRECISIONS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m msn_deploy.engines.web", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = p.add_subparsers(dest="command", required=True)
    site = commands.add_parser("export", help="write the site into a new folder")
    site.add_argument("folder", type=Path, help="a new (or empty) folder")
    site.add_argument("--model", default="official",
                      help="checkpoint, known name (default: official) or .onnx graph")
    add_precision_option(site, "the graph the page runs (default: fp16 from a checkpoint, a graph's own)",
                         ARTIFACT_PRECISIONS)
    site.add_argument("--tile", type=positive_int, default=DEFAULT_TILE,
                      help=f"tile size in LR px (default {DEFAULT_TILE})")
    site.add_argument("--overlap", type=non_negative_int, default=TILE_OVERLAP,
                      help=f"tile overlap in LR px (default {TILE_OVERLAP})")
    site.add_argument("--max-pixels", type=positive_int, default=DEFAULT_MAX_PIXELS,
                      help=f"largest image the page accepts, in LR pixels (default {DEFAULT_MAX_PIXELS:,})")
    site.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    options = SiteOptions(args.precision, args.tile, args.overlap, args.max_pixels)
    return run_cli(lambda: print(export_site(args.folder, args.model, options).summary()), verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
