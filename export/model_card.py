"""A model card beside an ncnn export, in the fields OpenModelDB's entries use (its `Model` schema:
name, author, license, tags, description, date, architecture, size, scale, channels, resources,
images), so that the files can be listed where users of upscaling apps look for models. What the
export measured (its verification) and which apps load the graph (export.ncnn_apps) go into the
description; nothing is claimed that the export did not check.

    from msn_deploy.export.model_card import write_model_card
    write_model_card(param, weights, graph, checkpoint, verification)  # msn_x4.openmodeldb.json beside param
"""

from __future__ import annotations

import datetime
import json
from pathlib import Path

from msn_deploy.export.ncnn_apps import known_apps, what_stops
from msn_deploy.msn.checkpoint import KNOWN_CHECKPOINTS, Checkpoint, sha256_of
from msn_deploy.msn.files import atomic_output
from msn_deploy.msn.formats.ncnn_param import NcnnParam

CARD_SUFFIX = ".openmodeldb.json"
OFFICIAL_AUTHOR = "dase-idealab"  # NTIRE 2024 Efficient SR, team 28


def model_card_path(param: Path) -> Path:
    return param.with_name(param.stem + CARD_SUFFIX)


def model_card(param: Path, weights: Path, graph: NcnnParam, checkpoint: Checkpoint, verification: str) -> dict:
    """The card of the exported pair (`param`, `weights`; `graph` is what `param` holds) made from
    `checkpoint`; `verification` is the export's own check, in words."""
    config = checkpoint.config
    official = checkpoint.sha256 == KNOWN_CHECKPOINTS["official"].sha256
    loads = [app.name for app in known_apps() if not what_stops(app, graph)]
    origin = ("the NTIRE 2024 Efficient Super-Resolution weights of team DASE-IDEALab (team28_MSN.pth)" if official
              else f"the checkpoint {checkpoint.path.name} (sha256 {checkpoint.sha256[:12]})")
    description = "\n\n".join([
        f"MSN, the Multi-Scale attention Network, x{config.upscale}: {origin}, exported to ncnn by msn-deploy.",
        f"Input blob `data`, output blob `output`, RGB in [0, 1]; any size from 29x29 up. "
        f"Verification on ncnn's CPU path against the PyTorch model: {verification}.",
        f"Loads in: {', '.join(loads)} (checked against each app's layer list).",
    ])
    return {
        "name": "MSN",
        "author": OFFICIAL_AUTHOR if official else "unknown",
        "license": None,  # the weights' licence is their publisher's to state
        "tags": [],
        "description": description,
        "date": datetime.date.today().isoformat(),
        "architecture": "msn",
        "size": [f"{config.num_feat}nf", f"{config.num_block}nb"],
        "scale": config.upscale,
        "inputChannels": config.in_channels,
        "outputChannels": config.out_channels,
        "resources": [{"platform": "ncnn", "type": "ncnn", "size": param.stat().st_size + weights.stat().st_size,
                       "sha256": sha256_of(weights), "urls": []}],
        "images": [],
    }


def write_model_card(param: Path, weights: Path, graph: NcnnParam, checkpoint: Checkpoint, verification: str) -> Path:
    path = model_card_path(param)
    with atomic_output(path) as tmp:
        Path(tmp).write_text(json.dumps(model_card(param, weights, graph, checkpoint, verification), indent=2) + "\n")
    return path
