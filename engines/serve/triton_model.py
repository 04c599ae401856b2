"""Triton Python-backend model over `msn_deploy.engines.load`.

`msn_deploy.export.write_triton_repository(..., python=True)` copies this file into a model repository as
`<name>/1/model.py`; Triton's Python stub then imports it there, beside the artifact. Tensors
cross the stub through DLPack: its numpy conversions (built for numpy 1) return empty or wrong
buffers under numpy 2 (measured with Triton 2.51's stub).
"""

from __future__ import annotations

import json
import site
from pathlib import Path


class TritonPythonModel:
    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config["parameters"].items()}
        # The site-packages where msn-deploy is installed, when Triton's Python does not have it
        # (--python-path); as a site folder, so that an editable install's path hooks load too.
        for folder in parameters.get("python_path", "").split(":"):
            if folder:
                site.addsitedir(folder)
        # msn-deploy first: it sets passive OpenMP waiting before torch loads (msn.threads).
        from msn_deploy import msn
        from msn_deploy.engines import runtime

        # isort: split

        import torch
        import triton_python_backend_utils  # exists only inside Triton's Python stub

        self.torch, self.pb_utils = torch, triton_python_backend_utils
        self.errors = (msn.MSNError,)
        folder = Path(args["model_repository"]) / args["model_version"]
        device = "cuda" if args["model_instance_kind"] == "GPU" else "cpu"
        self.engine = runtime.load(folder / parameters["artifact"], device=device)

    def execute(self, requests: list) -> list:
        dlpack, pb_utils = self.torch.utils.dlpack, self.pb_utils
        responses = []
        for request in requests:
            x = dlpack.from_dlpack(pb_utils.get_input_tensor_by_name(request, "input").to_dlpack())
            try:
                y = self.engine(x.float().cpu().contiguous()).contiguous()
                out = pb_utils.Tensor.from_dlpack("output", dlpack.to_dlpack(y))
                responses.append(pb_utils.InferenceResponse([out]))
            except self.errors as exc:  # bad input or output: an error response, not a crash
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses
