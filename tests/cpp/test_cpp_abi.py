"""The C library (msn_infer) driven through ctypes: one tiling rule and one pixel rule with Python."""

from __future__ import annotations

import ctypes
import json
import shutil
import subprocess

import cv2
import numpy as np
import pytest

from msn_deploy.engines.media.images import read_image, write_image
from msn_deploy.engines.runtime.onnxruntime_engine import OnnxRuntimeEngine
from msn_deploy.engines.runtime.tiling import TilePlan, tile_weight
from msn_deploy.msn.formats.precision import ArtifactError
from msn_deploy.msn.formats.sidecar import EngineSidecar, TensorIO
from tests.conftest import REPO

BUILD = REPO / "build"


class MsnImage(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("width", ctypes.c_int32), ("height", ctypes.c_int32),
                ("channels", ctypes.c_int32), ("stride_bytes", ctypes.c_int64), ("type", ctypes.c_int)]


class MsnTile(ctypes.Structure):
    _fields_ = [("y", ctypes.c_int32), ("x", ctypes.c_int32), ("h", ctypes.c_int32), ("w", ctypes.c_int32)]


INFER_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int32,
                            ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(ctypes.c_float))


@pytest.fixture(scope="session")
def lib():
    if shutil.which("cmake") is None or shutil.which("c++") is None:
        pytest.skip("cmake or a C++ compiler is not installed")
    subprocess.run(["cmake", "-S", str(REPO), "-B", str(BUILD), "-DCMAKE_BUILD_TYPE=Release"], check=True,
                   capture_output=True)
    subprocess.run(["cmake", "--build", str(BUILD), "-j2", "--target", "msn_infer"], check=True, capture_output=True)
    lib = ctypes.CDLL(str(BUILD / "libmsn_infer.so"))
    lib.msn_last_error.restype = ctypes.c_char_p
    lib.msn_upscale_planes.argtypes = [ctypes.POINTER(ctypes.c_float), ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                                       ctypes.c_int32, ctypes.c_int32, INFER_FN, ctypes.c_void_p,
                                       ctypes.POINTER(ctypes.c_float)]
    return lib


def c_plan(lib, h: int, w: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    count = ctypes.c_int32()
    assert lib.msn_tile_plan(h, w, tile, overlap, None, 0, ctypes.byref(count)) == 0, lib.msn_last_error()
    tiles = (MsnTile * count.value)()
    assert lib.msn_tile_plan(h, w, tile, overlap, tiles, count.value, ctypes.byref(count)) == 0
    return [(t.y, t.x, t.h, t.w) for t in tiles]


SIZES = [(h, w, tile, overlap) for h in (29, 64, 100, 257, 720) for w in (31, 128, 333, 1280)
         for tile, overlap in ((32, 8), (64, 16), (128, 32), (256, 0), (200, 50))]


@pytest.mark.parametrize("h, w, tile, overlap", SIZES)
def test_tile_plans_and_weights_equal_python(lib, h, w, tile, overlap):
    if tile < 2 * overlap + 1:
        pytest.skip("overlap must be below half the tile")
    plan = TilePlan(h, w, tile, overlap)
    expected = [(t.y, t.x, t.h, t.w) for t in plan.tiles()]
    assert c_plan(lib, h, w, tile, overlap) == expected
    for t in plan.tiles()[:4] + plan.tiles()[-2:]:
        py = tile_weight(plan, t, 4)
        c = np.empty(py.size, np.float32)
        tile_struct = MsnTile(t.y, t.x, t.h, t.w)
        assert lib.msn_tile_weight(h, w, overlap, ctypes.byref(tile_struct), 4,
                                   c.ctypes.data_as(ctypes.c_void_p), ctypes.c_size_t(c.size)) == 0
        np.testing.assert_array_equal(c.reshape(py.shape), py)  # bit-equal, not just close


def image_struct(pixels: np.ndarray) -> MsnImage:
    h, w = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    return MsnImage(pixels.ctypes.data, w, h, channels, 0, 1 if pixels.dtype == np.uint16 else 0)


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 3), (np.uint8, 1), (np.uint16, 1), (np.uint8, 4)])
def test_pixels_to_planes_equal_python_image_reader(lib, tmp_path, dtype, channels):
    rng = np.random.default_rng(channels)
    shape = (33, 47) if channels == 1 else (33, 47, channels)
    pixels = rng.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)
    path = tmp_path / "img.png"
    cv2.imwrite(str(path), pixels if channels == 1 else pixels[..., [2, 1, 0, 3][:channels]])  # cv2 stores BGR(A)
    py_planes = read_image(path).rgb.transpose(2, 0, 1)
    c_planes = np.empty((3, 33, 47), np.float32)
    img = image_struct(np.ascontiguousarray(pixels))
    assert lib.msn_image_to_planes(ctypes.byref(img), 0, c_planes.ctypes.data_as(ctypes.c_void_p),
                                   ctypes.c_size_t(c_planes.nbytes)) == 0
    np.testing.assert_array_equal(c_planes, py_planes)
    half = np.empty((3, 33, 47), np.float16)
    assert lib.msn_image_to_planes(ctypes.byref(img), 1, half.ctypes.data_as(ctypes.c_void_p),
                                   ctypes.c_size_t(half.nbytes)) == 0
    np.testing.assert_array_equal(half, py_planes.astype(np.float16))


@pytest.mark.parametrize("dtype, channels", [(np.uint8, 3), (np.uint16, 3), (np.uint8, 1)])
def test_planes_to_pixels_equal_python_image_writer(lib, tmp_path, dtype, channels):
    rng = np.random.default_rng(7)
    planes = (rng.random((3, 21, 30), dtype=np.float32) * 1.2 - 0.1).astype(np.float32)  # out of range too
    path = tmp_path / "out.png"
    write_image(path, planes.transpose(1, 2, 0), None, channels == 1, np.iinfo(dtype).max)
    written = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    expected = written if channels == 1 else written[..., ::-1]
    pixels = np.zeros((21, 30) if channels == 1 else (21, 30, 3), dtype)
    img = image_struct(pixels)
    assert lib.msn_planes_to_image(planes.ctypes.data_as(ctypes.c_void_p), 0, ctypes.byref(img)) == 0
    np.testing.assert_array_equal(pixels, expected)


def test_c_tiled_upscale_equals_python_runtime(lib, random_graph, reference_cases):
    """Same tiles, same blend, same float32 rounding: the C loop and the Python loop agree exactly."""
    engine = OnnxRuntimeEngine(random_graph)
    image = np.ascontiguousarray(next(c for c in reference_cases if c.lr.shape[:2] == (128, 128)).input_tensor().numpy()[0])

    @INFER_FN
    def infer(_user, data, n, h, w, out):
        x = np.ctypeslib.as_array(data, shape=(n, 3, h, w)).copy()
        np.ctypeslib.as_array(out, shape=(n, 3, h * 4, w * 4))[...] = engine._infer(x)
        return 0

    c_out = np.empty((3, 512, 512), np.float32)
    status = lib.msn_upscale_planes(image.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), 128, 128, 4, 64, 16, infer,
                                    None, c_out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
    assert status == 0, lib.msn_last_error()
    py_out = engine(image[None], tile=64, overlap=16)[0]
    np.testing.assert_array_equal(c_out, py_out)


def test_errors_carry_codes_and_messages(lib):
    assert lib.msn_image_to_planes(None, 0, None, ctypes.c_size_t(0)) == 1
    assert b"image is NULL" in lib.msn_last_error()
    count = ctypes.c_int32()
    assert lib.msn_tile_plan(20, 100, 64, 8, None, 0, ctypes.byref(count)) == 3
    assert b"below MSN's minimum 29x29" in lib.msn_last_error()
    engine = ctypes.c_void_p()
    status = lib.msn_engine_create(b"engine.plan", ctypes.byref(engine))
    if lib.msn_available_backends() & 1 == 0:
        assert status == 9 and b"no TensorRT backend" in lib.msn_last_error()


def python_sidecar(**changes) -> EngineSidecar:
    fields = dict(
        flavour="tensorrt_rtx", version="1.7.1.116", compute_capabilities=["SM86", "SM89"], gpu=None,
        precision="fp16", scale=3, profile={"min": [1, 29, 29], "opt": [2, 64, 96], "max": [4, 128, 256]},
        opt_level=3, workspace_mib=2048,
        io=[TensorIO("lr", "input", "float16", [-1, 3, -1, -1]), TensorIO("sr", "output", "float32", [-1, 3, -1, -1])],
        onnx_path="msn_x3_fp16.onnx", onnx_sha256="ab" * 32,
    )
    return EngineSidecar(**(fields | changes))


def c_sidecar(lib, engine_path):
    handle = ctypes.c_void_p()
    status = lib.msn_sidecar_load(str(engine_path).encode() + b".json", ctypes.byref(handle))
    return status, handle


def test_c_reads_the_sidecars_python_writes(lib, tmp_path):
    """The C++ reader agrees with msn.formats.sidecar.EngineSidecar on files that module wrote."""
    engine = tmp_path / "msn.plan"
    python_sidecar().write(engine)
    status, handle = c_sidecar(lib, engine)
    assert status == 0, lib.msn_last_error()
    try:
        lib.msn_sidecar_scale.argtypes = [ctypes.c_void_p]
        assert lib.msn_sidecar_scale(handle) == 3
        lo, opt, hi = ((ctypes.c_int32 * 3)() for _ in range(3))
        assert lib.msn_sidecar_profile(handle, lo, opt, hi) == 0
        assert [list(lo), list(opt), list(hi)] == [[1, 29, 29], [2, 64, 96], [4, 128, 256]]
        dtypes = ctypes.c_char_p(), ctypes.c_char_p()
        assert lib.msn_sidecar_io_dtypes(handle, ctypes.byref(dtypes[0]), ctypes.byref(dtypes[1])) == 0
        assert (dtypes[0].value, dtypes[1].value) == (b"float16", b"float32")
        assert lib.msn_sidecar_check(handle, b"tensorrt_rtx", b"1.7.1.116", b"SM89") == 0
        assert lib.msn_sidecar_check(handle, b"tensorrt_rtx", b"1.7.1.116", b"SM90") != 0
        assert b"python export/build_trt.py --onnx msn_x3_fp16.onnx" in lib.msn_last_error()
    finally:
        lib.msn_sidecar_destroy(handle)


def test_c_and_python_refuse_the_same_sidecars(lib, tmp_path):
    engine = tmp_path / "bad.plan"
    good = python_sidecar().to_json()
    hostile = [{}, [], {**good, "format": "msn-engine/9"}, {**good, "io": [{**good["io"][0], "dtype": "int8"}]}]
    for document in hostile:
        (tmp_path / "bad.plan.json").write_text(json.dumps(document))
        with pytest.raises(ArtifactError):
            EngineSidecar.read(engine)
        status, handle = c_sidecar(lib, engine)
        assert status != 0 and not handle.value, document
    # Format 1 (TensorRT's dtype names) is still read by both.
    legacy = {**good, "format": "msn-engine/1", "io": [{**t, "dtype": {"float16": "half", "float32": "float"}[t["dtype"]]}
                                                        for t in good["io"]]}
    (tmp_path / "bad.plan.json").write_text(json.dumps(legacy))
    assert EngineSidecar.read(engine).tensor("input").dtype == "float16"
    status, handle = c_sidecar(lib, engine)
    assert status == 0, lib.msn_last_error()
    lib.msn_sidecar_destroy(handle)
