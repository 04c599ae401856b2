"""Runs in its own process with only chaiNNer's ncnn wheel on PYTHONPATH (see chainner_ncnn.py):
PARAM BIN INPUT_BLOB OUTPUT_BLOB IN.npy OUT.npy cpu|vulkan fp32|fp16. Exit 1 with ncnn's words on
stderr when it cannot load or run the graph."""

import sys

import numpy as np
from ncnn_vulkan import ncnn  # chaiNNer's import: the wheel's own module, whatever else is installed


def main() -> int:
    param, weights, input_blob, output_blob, source, result, device, precision = sys.argv[1:9]
    net = ncnn.Net()
    half = precision == "fp16"
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = half
    if device == "vulkan":
        if ncnn.get_gpu_count() == 0:
            print("no Vulkan device", file=sys.stderr)
            return 1
        net.opt.use_vulkan_compute = True
        net.set_vulkan_device(0)
    with open(param) as text:
        if net.load_param_mem(text.read()) != 0:
            print(f"load_param_mem failed on {param}", file=sys.stderr)
            return 1
    if net.load_model(weights) != 0:
        print(f"load_model failed on {weights}", file=sys.stderr)
        return 1
    rgb = np.load(source)
    image = ncnn.Mat.from_pixels(rgb, ncnn.Mat.PixelType.PIXEL_RGB, rgb.shape[1], rgb.shape[0])
    image.substract_mean_normalize([], [1 / 255.0] * 3)
    extractor = net.create_extractor()
    extractor.input(input_blob, image)
    status, out = extractor.extract(output_blob)
    if status != 0:
        print(f"extract failed (status {status})", file=sys.stderr)
        return 1
    np.save(result, np.array(out).transpose(1, 2, 0).astype(np.float32))
    return 0


if __name__ == "__main__":
    sys.exit(main())
