"""The file formats of msn-deploy, one owner each, on a floor of their own: the exporter writes
through them and the runtimes read through them, so running an artifact never loads the exporter.

    precision   the precision vocabulary (fp32, fp16) and the dtype names behind it
    graph       GraphMetadata, MSNGraph: an exported ONNX graph and the "is it MSN?" check
    sidecar     EngineSidecar: the JSON beside a TensorRT plan
    tensorrt    the two TensorRT flavours (tensorrt, tensorrt_rtx) and the GPU an engine targets
    ncnn_param  ncnn's text graph (.param): read, rewritten, written
    ncnn_net    running an ncnn graph on ncnn's CPU path or a Vulkan device
    kinds       ArtifactKind: how each kind of artifact is recognised and what it implies
"""
