"""The in-browser upscaler: exported, served on 127.0.0.1 by its own serve.py, driven in headless
Chromium; its pixels, read back from the page, against the Python runtime on the same graph."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from PIL import Image

from msn_deploy import engines
from msn_deploy.engines.web import SiteOptions, export_site, serving
from msn_deploy.engines.web.__main__ import main as web_main
from msn_deploy.engines.web.site import GRAPH_NAME, PAGE_FILES
from msn_deploy.msn import MissingFileError, UsageError
from msn_deploy.msn.metrics import to_uint8
from tests.util import exit_code

PAGE_TIMEOUT_S = 300  # a bound for hangs on a busy machine; a photo takes seconds


@pytest.fixture(scope="module")
def site_fp32(tmp_path_factory, official_graph):
    """From the session's FP32 graph (export_site copies a graph as it is)."""
    site = export_site(tmp_path_factory.mktemp("web") / "fp32", official_graph)
    assert site.graph.read_bytes() == official_graph.read_bytes()
    return site


@pytest.fixture(scope="module")
def site_fp16(tmp_path_factory, official_ckpt, official_fp16_graph):
    """From the checkpoint: its graph is the cache's."""
    site = export_site(tmp_path_factory.mktemp("web") / "fp16", official_ckpt, SiteOptions(precision="fp16"))
    assert site.graph.read_bytes() == official_fp16_graph.read_bytes()
    return site


def in_page(browser, url, image, query="") -> dict:
    """Open the page, give it `image`, wait until it is done or failed; what it did, with the pixels."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + query)
    status = "return window.msn && window.msn.status"
    WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=0.2).until(
        lambda d: d.execute_script(status) in ("ready", "error"))
    browser.find_element(By.ID, "file").send_keys(str(image))
    WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=0.2).until(
        lambda d: d.execute_script(status) in ("done", "error"))
    page = {"status": browser.execute_script(status), "error": browser.find_element(By.ID, "error").text,
            "text": browser.find_element(By.ID, "status").text, "limit": browser.find_element(By.ID, "limit").text,
            "progress": browser.execute_script("const p = document.getElementById('progress'); return [p.value, p.max]"),
            "fetched": browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")}
    if page["status"] == "done":
        width, height, tiles, backend = browser.execute_script(
            "const r = window.msn.result; return [r.width, r.height, r.tiles, r.backend]")
        rgba = base64.b64decode(browser.execute_script("return window.msnResultBase64()"))
        page |= {"pixels": np.frombuffer(rgba, np.uint8).reshape(height, width, 4), "tiles": tiles, "backend": backend,
                 "download": downloaded(browser)}
    return page


def downloaded(browser) -> np.ndarray:
    """The image behind the page's download link (the page's own PNG encoder), decoded here."""
    return np.asarray(Image.open(io.BytesIO(downloaded_bytes(browser))))


def python_result(site, case, **tiling) -> np.ndarray:
    engine = engines.load(site.graph, backend="onnxruntime")
    return to_uint8(engine(case.input_tensor().numpy(), **tiling)[0].transpose(1, 2, 0)).astype(np.int16)


@pytest.fixture
def photos(tmp_path, reference_cases):
    paths = {}
    for case in reference_cases:
        paths[case.name] = tmp_path / f"{case.name}.png"
        Image.fromarray(case.lr).save(paths[case.name])
    return paths


@pytest.mark.parametrize("precision, levels", [("fp32", 1), ("fp16", 2)])
def test_the_reference_photos_in_the_browser_match_the_python_runtime(browser, site_fp32, site_fp16, photos,
                                                                      reference_cases, precision, levels):
    site = {"fp32": site_fp32, "fp16": site_fp16}[precision]
    with serving(site) as url:
        for case in reference_cases:
            page = in_page(browser, url, photos[case.name], "?backend=wasm")
            assert page["status"] == "done", page
            assert page["backend"] == "wasm" and "on wasm" in page["text"]
            assert page["fetched"] and all(name.startswith(url) for name in page["fetched"]), page["fetched"]
            rgb = page["pixels"][..., :3].astype(np.int16)
            assert rgb.shape == (4 * case.lr.shape[0], 4 * case.lr.shape[1], 3)  # at their own odd sizes
            assert np.abs(rgb - python_result(site, case)).max() <= levels, case.name
            assert (page["pixels"][..., 3] == 255).all()
            assert np.array_equal(page["download"], page["pixels"][..., :3])  # an RGB photo downloads as RGB


def test_a_tiled_photo_matches_the_python_runtimes_tiles(browser, site_fp32, photos, reference_cases):
    case = max(reference_cases, key=lambda c: c.lr.size)  # astronaut, 128x128: nine 64 px tiles
    with serving(site_fp32) as url:
        page = in_page(browser, url, photos[case.name], "?backend=wasm&tile=64&overlap=16")
    assert page["status"] == "done" and page["tiles"] == 9 and page["progress"] == [9, 9], page
    rgb = page["pixels"][..., :3].astype(np.int16)
    assert np.abs(rgb - python_result(site_fp32, case, tile=64, overlap=16)).max() <= 1
    assert np.abs(rgb - python_result(site_fp32, case)).max() > 2  # tiled for real: not the whole-image result


def test_the_page_refuses_what_it_cannot_upscale_in_one_line(browser, site_fp32, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    animated = tmp_path / "spin.gif"
    frames = [Image.new("RGB", (40, 40), colour) for colour in ("red", "blue")]
    frames[0].save(animated, save_all=True, append_images=frames[1:], duration=100, loop=0)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (1100, 1000), "gray").save(huge)
    small = tmp_path / "small.png"
    Image.new("RGB", (20, 40), "gray").save(small)
    cases = {text: "notes.txt is not an image", animated: "spin.gif is animated (2 frames)",
             huge: "huge.png is 1100x1000 = 1,100,000 pixels; this page takes at most 1,000,000",
             small: "small.png is 20x40; MSN needs at least 29x29"}
    with serving(site_fp32) as url:
        for path, message in cases.items():
            page = in_page(browser, url, path, "?backend=wasm")
            assert page["status"] == "error" and page["error"].startswith(message), (path.name, page)
            assert "\n" not in page["error"] and page["limit"] == "1,000,000"


def test_webgpu_where_chromium_offers_an_adapter(browser, site_fp16, photos, reference_cases):
    browser.get("about:blank")
    adapter = browser.execute_async_script(
        "const done = arguments[0]; if (!navigator.gpu) return done(false);"
        "navigator.gpu.requestAdapter().then((a) => done(!!a), () => done(false));")
    if not adapter:
        pytest.skip("this Chromium offers no WebGPU adapter (headless, no GPU); the wasm backend is tested above")
    case = min(reference_cases, key=lambda c: c.lr.size)
    with serving(site_fp16) as url:
        page = in_page(browser, url, photos[case.name], "?backend=webgpu")
    assert page["status"] == "done" and page["backend"] == "webgpu", page
    assert np.abs(page["pixels"][..., :3].astype(np.int16) - python_result(site_fp16, case)).max() <= 2


def test_bad_exports_are_refused_before_any_work(tmp_path, random_ckpt, random_graph, monkeypatch, caplog):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "index.html").write_text("someone's site")
    refusals = [
        (dict(folder=taken), UsageError, "exists and is not an empty folder"),
        (dict(folder=tmp_path / "missing" / "site"), MissingFileError, "does not exist"),
        (dict(folder=tmp_path / "a", options=SiteOptions(precision="int8")), UsageError, "fp16 or fp32"),
        (dict(folder=tmp_path / "b", options=SiteOptions(tile=16)), ValueError, "below MSN's minimum"),
        (dict(folder=tmp_path / "c", options=SiteOptions(max_pixels=1000)), UsageError, "below one 256x256 tile"),
        (dict(folder=tmp_path / "f", model=tmp_path / "msn.plan"), UsageError, "compiled engine; the browser runs ONNX"),
        (dict(folder=tmp_path / "g", model=random_graph, options=SiteOptions(precision="fp16")), UsageError,
         "is an fp32 graph; leave out the precision"),
    ]
    for kwargs, error, message in refusals:
        with pytest.raises(error, match=message):
            export_site(**{"model": random_ckpt, **kwargs})
    monkeypatch.setenv("MSN_ORT_WEB_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(MissingFileError, match="npm install --prefix .web onnxruntime-web@"):
        export_site(tmp_path / "d", random_ckpt)
    assert exit_code(web_main, ["export", str(tmp_path / "e"), "--model", str(random_ckpt)]) == 2
    assert "npm install" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]  # nothing half-written anywhere
    assert [p.name for p in taken.iterdir()] == ["index.html"]


def test_an_empty_current_folder_and_a_link_to_an_empty_folder_get_the_site(tmp_path, random_graph, monkeypatch):
    """Hardening round 4, G: `export .` in an empty folder, and a link to an empty folder, failed
    after the export with a raw errno text."""
    here, target = tmp_path / "here", tmp_path / "target"
    here.mkdir()
    target.mkdir()
    (tmp_path / "link").symlink_to(target)
    monkeypatch.chdir(here)
    assert web_main(["export", ".", "--model", str(random_graph)]) == 0
    assert export_site(tmp_path / "link", random_graph).folder == tmp_path / "link"
    for folder in (here, target):
        assert {p.name for p in folder.iterdir()} == {*PAGE_FILES, GRAPH_NAME, "ort", "config.json"}


@pytest.fixture(scope="module")
def site_random(tmp_path_factory, random_graph):
    return export_site(tmp_path_factory.mktemp("web") / "random", random_graph)


def test_serve_py_sends_isolation_and_a_content_security_policy(site_random):
    """Hardening round 4, J and Q: nothing failed when serve.py stopped sending COEP (the page
    silently loses cross-origin isolation and runs wasm on one thread); the static page had no CSP."""
    import requests

    with serving(site_random) as url:
        headers = requests.get(url, timeout=30).headers
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    policy = headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self' 'wasm-unsafe-eval'" in policy


@pytest.mark.parametrize("port", ["99999", "http", "-1", "taken"])
def test_serve_py_refuses_a_bad_or_taken_port_in_one_line(site_random, port):
    import socket
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        number = str(taken.getsockname()[1]) if port == "taken" else port
        done = subprocess.run([sys.executable, str(site_random.folder / "serve.py"), "--port", number],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert ("cannot listen on 127.0.0.1" if port == "taken" else "a port is a number from 0 to 65535") in done.stderr


@pytest.mark.slow
def test_graphs_the_page_cannot_run_are_refused_by_the_site_and_not_offered_by_the_service(random_ckpt, tmp_path):
    """Hardening round 4, C: the site took a fixed-size (or batch 2) graph and every upload then failed
    with onnxruntime's raw words; msn-serve offered "on this device" for those and for FP16-I/O graphs."""
    from msn_deploy.engines.runtime.model_files import ModelFiles
    from msn_deploy.engines.web.device import browser_graph
    from msn_deploy.export import ExportOptions, export_onnx

    graphs = {
        "64x64": (ExportOptions(static_hw=(64, 64), verify=False), "takes only ?x3x64x64 inputs"),
        "batch2": (ExportOptions(batch=2, verify=False), "takes only 2x3x?x? inputs"),
        "fp16io": (ExportOptions(fp16=True, io_dtype="float16", verify=False), "takes float16 tensors"),
    }
    for name, (options, message) in graphs.items():
        graph = export_onnx(random_ckpt, tmp_path / f"{name}.onnx", options).path
        with pytest.raises(UsageError, match=re.escape(message)):
            export_site(tmp_path / f"site-{name}", graph)
        offered = browser_graph(ModelFiles.read(str(graph)), None)
        assert offered.data is None and message in offered.reason, name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("site-")]


def test_the_page_reads_an_image_by_its_content_not_its_name(browser, site_random, tmp_path):
    """Hardening round 4, E: a JPEG named .png was refused with "Failed to retrieve track metadata.",
    a PNG without extension was "not an image", a text file named .png got the cryptic line."""
    jpeg_as_png, png_bare, text_as_png = tmp_path / "photo.png", tmp_path / "photo", tmp_path / "notes.png"
    Image.new("RGB", (40, 48), "teal").save(jpeg_as_png, format="JPEG")
    Image.new("RGB", (40, 48), "teal").save(png_bare, format="PNG")
    text_as_png.write_text("not an image")
    with serving(site_random) as url:
        for path in (jpeg_as_png, png_bare):
            page = in_page(browser, url, path, "?backend=wasm")
            assert page["status"] == "done" and page["pixels"].shape == (192, 160, 4), (path.name, page)
        page = in_page(browser, url, text_as_png, "?backend=wasm")
    assert page["status"] == "error" and page["error"].startswith("notes.png is not an image this page reads"), page


def page_error(browser, url: str) -> str:
    """The error the page shows on opening `url` (it fails before any image is chosen)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=0.2).until(
        lambda d: d.execute_script("return window.msn && window.msn.status") in ("ready", "error"))
    return browser.find_element(By.ID, "error").text


def test_the_page_checks_its_tiling_query_and_its_config(browser, random_graph, tmp_path):
    """Hardening round 4, I and H: `?tile=20` gave onnxruntime's raw error, `?tile=64&overlap=64`
    "Invalid array length"; a missing or broken config.json left a dead page with no message."""
    site = export_site(tmp_path / "site", random_graph)
    with serving(site) as url:
        assert page_error(browser, url + "?tile=20").startswith("tile 20 is not a whole number of pixels from MSN's")
        assert page_error(browser, url + "?tile=64&overlap=64").startswith("overlap 64 must be a whole number in [0, 31]")
        assert page_error(browser, url + "?tile=big").startswith("tile NaN is not a whole number")
        assert page_error(browser, url + "?tile=64&overlap=16") == ""
        config = site.folder / "config.json"
        config.write_text("{not json")
        assert "config.json is missing or damaged" in page_error(browser, url)
        config.unlink()
        assert "config.json is missing or damaged (HTTP 404)" in page_error(browser, url)


def downloaded_bytes(browser) -> bytes:
    """The file behind the page's download link, as it would be saved."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    link = WebDriverWait(browser, PAGE_TIMEOUT_S, poll_frequency=0.2).until(
        lambda d: d.find_element(By.ID, "download").get_attribute("href"))
    script = """
        const done = arguments[arguments.length - 1];
        fetch(arguments[0]).then(r => r.arrayBuffer()).then(buffer => {
            let text = ""; new Uint8Array(buffer).forEach(b => text += String.fromCharCode(b)); done(btoa(text));
        });"""
    return base64.b64decode(browser.execute_async_script(script, link))


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_the_pages_download_keeps_the_photos_icc_profile(browser, site_random, tmp_path, fmt):
    """Hardening round 4, D: the page's download dropped the ICC profile (msn-upscale keeps it), so a
    Display-P3 photo silently changed colour."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()  # any profile but none
    photo = tmp_path / f"p3.{fmt.lower()}"
    Image.new("RGB", (40, 48), "teal").save(photo, format=fmt, icc_profile=profile)
    with serving(site_random) as url:
        page = in_page(browser, url, photo, "?backend=wasm")
        assert page["status"] == "done", page
        saved = Image.open(io.BytesIO(downloaded_bytes(browser)))
    assert saved.format == "PNG" and saved.info.get("icc_profile") == profile


def test_a_transparent_icon_upscales_on_the_page_as_msn_upscale_does(browser, site_random, tmp_path):
    """Hardening round 4, A: the page read pixels back through a premultiplying 2D canvas, so the
    colour stored under alpha 0 became 0 and MSN's whole-image statistics carried it into opaque
    pixels (up to 182 levels off); alpha was resized by the browser's filter (20 levels off)."""
    from msn_deploy.engines import upscale

    rng = np.random.default_rng(3)
    h, w = 48, 56
    rgba = np.concatenate([rng.integers(0, 256, (h, w, 3)), np.zeros((h, w, 1))], axis=2).astype(np.uint8)
    yy, xx = np.mgrid[:h, :w]
    radius = np.hypot(yy - h / 2, xx - w / 2)
    rgba[..., 3] = np.where(radius < 14, 255, np.where(radius < 20, 96, 0))  # opaque disc, translucent ring
    icon = tmp_path / "icon.png"
    Image.fromarray(rgba, "RGBA").save(icon)
    expected = tmp_path / "icon_x4.png"
    assert upscale.main([str(icon), "-o", str(expected), "--model", str(site_random.graph),
                         "--backend", "onnxruntime"]) == 0
    runtime = np.asarray(Image.open(expected).convert("RGBA")).astype(np.int16)
    with serving(site_random) as url:
        page = in_page(browser, url, icon, "?backend=wasm")
    assert page["status"] == "done", page
    pixels = page["pixels"].astype(np.int16)
    assert np.abs(pixels[..., 3] - runtime[..., 3]).max() <= 1
    assert np.abs(pixels[..., :3] - runtime[..., :3]).max() <= 1
