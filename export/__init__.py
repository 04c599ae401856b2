"""Export of MSN's inference form: ONNX graphs, ncnn graphs, TensorRT engines, Triton model repositories.

    from msn_deploy import export
    graph = export.export_onnx("best.pth", "msn_x4_fp16.onnx", export.ExportOptions(fp16=True))
    plan = export.build_engine(graph.path, "msn_x4_fp16.plan")
    repo = export.write_triton_repository(plan.path, "model_repository")

Each returns a small result object and raises an `msn.MSNError` subclass. The names load their
modules on first use, so that reading an artifact (msn.formats) never loads the exporter.
"""

from __future__ import annotations

# First, before anything loads torch: passive OpenMP waiting (msn.threads).
import msn_deploy.msn.threads  # noqa: F401

# isort: split

from msn_deploy.msn.lazy_names import names_on_first_use

_API = {
    "ExportOptions": "msn_deploy.export.onnx_graph",
    "ExportError": "msn_deploy.export.onnx_graph",
    "ExportResult": "msn_deploy.export.onnx_export",
    "export_onnx": "msn_deploy.export.onnx_export",
    "VerificationError": "msn_deploy.export.verify",
    "NcnnExportOptions": "msn_deploy.export.ncnn_export",
    "NcnnExportResult": "msn_deploy.export.ncnn_export",
    "export_ncnn": "msn_deploy.export.ncnn_export",
    "BuildSettings": "msn_deploy.export.trt_build",
    "BuildError": "msn_deploy.export.trt_build",
    "EngineResult": "msn_deploy.export.trt_build",
    "Profile": "msn_deploy.export.trt_build",
    "build_engine": "msn_deploy.export.trt_build",
    "check_output_paths": "msn_deploy.export.trt_build",
    "TritonRepository": "msn_deploy.export.triton_repo",
    "write_triton_repository": "msn_deploy.export.triton_repo",
    "ArtifactError": "msn_deploy.msn.formats.precision",
    "EngineSidecar": "msn_deploy.msn.formats.sidecar",
    "GraphMetadata": "msn_deploy.msn.formats.graph",
    "MSNGraph": "msn_deploy.msn.formats.graph",
}

__all__ = sorted(_API)
__getattr__, __dir__ = names_on_first_use(__name__, _API)
