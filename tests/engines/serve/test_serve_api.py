"""The HTTP API of `python -m msn_deploy.engines.serve` on a real local Ray cluster: outputs against the Python
runtime, batching by size, auth, every kind of bad upload, overload, and a clean stop."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("ray.serve", reason="the serve extra (ray[serve]) is not installed")

import requests

from msn_deploy import engines
from tests.engines.serve.helpers import (
    STARTUP_TIMEOUT_S,
    ServeProcess,
    decoded,
    expected_png_pixels,
    max_level_difference,
    png_bytes,
)
from tests.ray_cluster import ray_processes_left
from tests.util import png_claiming

pytestmark = [pytest.mark.slow, pytest.mark.service]

TOKEN = "test-token-3f9c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_PIXELS = 160 * 160
MAX_QUEUED = 8
BODY_TIMEOUT_S = 4


@pytest.fixture(scope="module")
def server(random_graph):
    service = ServeProcess([str(random_graph), "--max-batch", "4", "--batch-wait-ms", "300",
                            "--max-pixels", str(MAX_PIXELS), "--max-upload-mb", "1",
                            "--max-queued", str(MAX_QUEUED), "--body-timeout-s", str(BODY_TIMEOUT_S)], token=TOKEN)
    try:
        service.wait_healthy()
        yield service
    finally:
        assert service.stop() == 0, service.output()[-3000:]
        assert ray_processes_left(service.tmpdir) == [], "Ray processes left behind"


@pytest.fixture(scope="module")
def runtime(random_graph):
    return engines.load(random_graph, backend="openvino")


def upscale(server: ServeProcess, body, headers=None) -> requests.Response:
    return requests.post(server.url + "/v1/upscale", data=body, headers={**AUTH, **(headers or {})}, timeout=120)


def test_health_is_open_and_info_needs_the_token(server, random_graph):
    health = requests.get(server.url + "/v1/health", timeout=10)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    probe = requests.head(server.url + "/v1/health", timeout=10)  # as load balancers ask (hardening round 3, G)
    assert probe.status_code == 200 and probe.content == b""
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        denied = requests.get(server.url + "/v1/info", headers=headers, timeout=10)
        assert denied.status_code == 401 and "bearer token" in denied.json()["error"]
        assert denied.headers["WWW-Authenticate"] == "Bearer"
    info = requests.get(server.url + "/v1/info", headers=AUTH, timeout=30).json()
    assert info["model"] == random_graph.name and info["backend"] == "openvino" and info["precision"] == "fp32"
    assert info["scale"] == 4 and info["replicas"] == 1 and info["max_batch"] == 4
    assert info["profile"] == "1x29x29 .. ?x?x?"


def test_unknown_paths_and_methods_get_json_errors(server):
    for method, path, status in [("GET", "/v1/upscale", 405), ("POST", "/v1/upscal", 404), ("GET", "/index.html", 404)]:
        reply = requests.request(method, server.url + path, headers=AUTH, timeout=10)
        assert reply.status_code == status and "POST /v1/upscale" in reply.json()["error"]


def test_upload_without_token_is_refused_before_any_work(server):
    reply = requests.post(server.url + "/v1/upscale", data=b"\x89PNG anything", timeout=10)
    assert reply.status_code == 401


rng = np.random.default_rng(7)
UPLOADS = {
    "rgb8.png": png_bytes((rng.random((40, 48, 3)) * 255).astype(np.uint8)),
    "rgb16.png": png_bytes((rng.random((36, 44, 3)) * 65535).astype(np.uint16)),
    "gray8.png": png_bytes((rng.random((33, 47)) * 255).astype(np.uint8)),
    "gray16.png": png_bytes((rng.random((40, 40)) * 65535).astype(np.uint16)),
    "rgba8.png": png_bytes((rng.random((32, 40, 4)) * 255).astype(np.uint8)),
    "rgba16.png": png_bytes((rng.random((32, 32, 4)) * 65535).astype(np.uint16)),
    "rgb8.jpg": png_bytes((rng.random((48, 48, 3)) * 255).astype(np.uint8), ".jpg"),
    "rgb8.webp": png_bytes((rng.random((40, 32, 3)) * 255).astype(np.uint8), ".webp"),
    "rgb16.tiff": png_bytes((rng.random((30, 50, 3)) * 65535).astype(np.uint16), ".tiff"),
    "rgb8.bmp": png_bytes((rng.random((31, 37, 3)) * 255).astype(np.uint8), ".bmp"),
}


@pytest.mark.parametrize("name", list(UPLOADS))
def test_upscaled_png_matches_the_python_runtime(server, runtime, name):
    body = UPLOADS[name]
    reply = upscale(server, body)
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "image/png" and reply.content.startswith(b"\x89PNG")
    got, want = decoded(reply.content), expected_png_pixels(runtime, body)
    # Bit depth and channels as the image CLI keeps them; values within one level (threads differ).
    assert max_level_difference(got, want) <= 1


def test_concurrent_uploads_share_engine_calls_by_size_only(server, runtime):
    small = [png_bytes((rng.random((40, 48, 3)) * 255).astype(np.uint8)) for _ in range(4)]
    wide = [png_bytes((rng.random((32, 56, 3)) * 255).astype(np.uint8)) for _ in range(3)]
    bodies = [small[0], wide[0], small[1], wide[1], small[2], wide[2], small[3]]  # batches get both sizes
    with ThreadPoolExecutor(len(bodies)) as pool:
        replies = list(pool.map(lambda body: upscale(server, body), bodies))
    assert [r.status_code for r in replies] == [200] * len(bodies)
    for body, reply in zip(bodies, replies):
        assert max_level_difference(decoded(reply.content), expected_png_pixels(runtime, body)) <= 1
    small_calls = [int(r.headers["X-MSN-Batch"]) for r in replies[0::2]]
    wide_calls = [int(r.headers["X-MSN-Batch"]) for r in replies[1::2]]
    assert max(small_calls) > 1, "concurrent same-size uploads were never batched"
    assert max(small_calls) <= 4 and max(wide_calls) <= 3, "a batch mixed LR sizes"


def animated_png() -> bytes:
    from PIL import Image

    frames = [Image.fromarray(np.full((40, 40, 3), value, np.uint8)) for value in (0, 255)]
    out = io.BytesIO()
    frames[0].save(out, "PNG", save_all=True, append_images=frames[1:])
    return out.getvalue()


def chunked(data: bytes, size: int = 65536):
    for start in range(0, len(data), size):
        yield data[start:start + size]


BAD_UPLOADS = {
    "empty": (b"", 400, "no body"),
    "not an image": (b"hello, this is text" * 10, 400, "not a readable image"),
    "truncated png": (UPLOADS["rgb8.png"][:60], 400, "readable image"),
    "too small": (png_bytes(np.zeros((20, 64, 3), np.uint8)), 400, "at least 29x29"),
    "gif": (bytes.fromhex("47494638396120002000800000000000ffffff2c00000000200020000002028401003b"), 400,
            "GIF images are not accepted"),
    "many pixels": (png_claiming(1000, 1000, b"\0" * 64), 413, "1000x1000 = 1000000 pixels; the limit is 25600"),
    "animated": (animated_png(), 400, "animated (2 frames)"),
    "too many pixels": (png_bytes(np.zeros((170, 170, 3), np.uint8)), 413, "the limit is 25600"),
    "decompression bomb": (png_claiming(100_000, 100_000, b"\0" * 64), 413, "the limit is 25600"),
    "too large upload": (np.random.default_rng(0).bytes(1_200_000), 413, "larger than the server's limit"),
    "too large chunked upload": (None, 413, "larger than the server's limit"),
}


@pytest.mark.parametrize("case", list(BAD_UPLOADS))
def test_bad_uploads_get_json_4xx_and_the_server_stays_up(server, case):
    body, status, words = BAD_UPLOADS[case]
    if body is None:
        body = chunked(np.random.default_rng(1).bytes(1_500_000))
    started = time.perf_counter()
    reply = upscale(server, body)
    assert reply.status_code == status, reply.text
    assert words in reply.json()["error"]
    if status == 413:
        assert time.perf_counter() - started < 5, "a refused upload took as long as a decode"
    assert requests.get(server.url + "/v1/health", timeout=10).status_code == 200


def test_overload_is_503_with_retry_after_never_500(server):
    body = png_bytes((rng.random((64, 64, 3)) * 255).astype(np.uint8))
    with ThreadPoolExecutor(32) as pool:
        replies = list(pool.map(lambda _: upscale(server, body), range(32)))
    statuses = [r.status_code for r in replies]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(503) >= 1 and statuses.count(200) >= MAX_QUEUED
    refused = next(r for r in replies if r.status_code == 503)
    assert "retry" in refused.json()["error"] and refused.headers["Retry-After"] == "1"
    assert upscale(server, body).status_code == 200


def test_sigterm_lets_requests_in_flight_finish_and_leaves_no_ray_process(random_graph, runtime, tmp_path):
    # A long batch wait holds the request in the replica while the server is told to stop.
    temp = tmp_path / "temp"  # the replicas' temporary files, which must all be gone afterwards
    temp.mkdir()
    service = ServeProcess([str(random_graph), "--batch-wait-ms", "3000", "--max-batch", "8"],
                           extra_env={"TMPDIR": str(temp)})
    try:
        service.wait_healthy()
        body = UPLOADS["rgb8.png"]
        result: dict[str, requests.Response] = {}
        sender = threading.Thread(target=lambda: result.update(
            reply=requests.post(service.url + "/v1/upscale", data=body, timeout=120)))
        sender.start()
        time.sleep(1.0)
        service.proc.send_signal(signal.SIGTERM)
        sender.join(120)
        assert service.proc.wait(120) == 0, service.output()[-3000:]
    finally:
        service.stop()
    reply = result["reply"]
    assert reply.status_code == 200, reply.text
    assert max_level_difference(decoded(reply.content), expected_png_pixels(runtime, body)) <= 1
    assert "stopped" in service.output()
    assert ray_processes_left(service.tmpdir) == [], "Ray processes left behind"
    assert not list(temp.glob("msn-model-*")), "a replica left its model copy behind"


def test_sigterm_during_start_up_stops_cleanly(random_graph):
    service = ServeProcess([str(random_graph)])
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "Ray started here" not in service.output() and time.monotonic() < deadline:
            assert service.proc.poll() is None, service.output()[-3000:]
            time.sleep(0.1)
        service.proc.send_signal(signal.SIGTERM)  # while the application is being deployed
        assert service.proc.wait(120) == 0, service.output()[-3000:]
    finally:
        service.stop()
    assert "stopped" in service.output()
    assert ray_processes_left(service.tmpdir) == [], "Ray processes left behind"


def test_slow_senders_cannot_starve_the_service(server):
    """More connections trickling a byte a second than the queues hold (2 x MAX_QUEUED): genuine
    uploads are still served, and each trickler gets a JSON 408 once its body time is up."""
    import socket

    tricklers = []
    for _ in range(3 * MAX_QUEUED):
        conn = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        conn.sendall(f"POST /v1/upscale HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                     "Content-Length: 100000\r\n\r\n".encode())
        tricklers.append(conn)
    started = time.monotonic()
    body = png_bytes((np.random.default_rng(9).random((40, 48, 3)) * 255).astype(np.uint8))
    try:
        for _ in range(2):  # while every trickler still has time left
            for conn in tricklers:
                conn.sendall(b"x")
            assert upscale(server, body).status_code == 200
        assert time.monotonic() - started < BODY_TIMEOUT_S + 60
        answers = []
        for conn in tricklers:  # bounded: each is answered once its body timeout passes
            conn.settimeout(BODY_TIMEOUT_S + 60)
            answer = b""
            while not answer.rstrip().endswith(b"}"):  # headers and body may come in several reads
                data = conn.recv(4096)
                if not data:
                    break
                answer += data
            answers.append(answer.decode(errors="replace"))
    finally:
        for conn in tricklers:
            conn.close()
    assert all(a.startswith("HTTP/1.1 408") and "did not arrive within" in a for a in answers), answers[:2]
    assert upscale(server, body).status_code == 200


def test_exif_orientation_and_gray_alpha_survive_the_service(server):
    """The service reads images as the CLI does: an Orientation=6 JPEG comes back upright (rotated),
    a 16-bit gray+alpha PNG comes back 16-bit gray+alpha."""
    import png
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    stored = io.BytesIO()
    Image.fromarray((rng.random((40, 64, 3)) * 255).astype(np.uint8)).save(stored, "JPEG", exif=exif.tobytes())
    reply = upscale(server, stored.getvalue())
    assert reply.status_code == 200, reply.text
    assert Image.open(io.BytesIO(reply.content)).size == (4 * 40, 4 * 64)  # width x height: upright
    gray_alpha = io.BytesIO()
    rows = (rng.random((36, 2 * 44)) * 65535).astype(np.uint16)
    png.Writer(44, 36, greyscale=True, alpha=True, bitdepth=16).write(gray_alpha, rows)
    reply = upscale(server, gray_alpha.getvalue())
    assert reply.status_code == 200, reply.text
    width, height, _, info = png.Reader(bytes=reply.content).read()
    assert (width, height) == (4 * 44, 4 * 36) and info["greyscale"] and info["alpha"] and info["bitdepth"] == 16


# The web page at GET /, driven in a real headless Chromium (Debian's chromium + chromium-driver).
def upload_in_page(browser, server, path, token: str | None, on_device: bool = False):
    """Open the page, choose where (on this device: offered once the page has read /web/config.json),
    give it `path`; the error it shows ("" when it shows a result)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    if on_device:
        WebDriverWait(browser, 60, poll_frequency=0.2).until(lambda d: d.find_element(By.ID, "on-device").is_enabled())
        browser.find_element(By.ID, "on-device").click()
    if token:
        browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.ID, "file").send_keys(str(path))
    done = lambda d: d.find_element(By.ID, "error").text or (  # noqa: E731
        d.find_element(By.ID, "size").text and not d.find_element(By.ID, "result").get_attribute("class"))
    WebDriverWait(browser, 300, poll_frequency=0.2).until(done)  # a bound for hangs on a busy machine
    return browser.find_element(By.ID, "error").text


def page_result_png(browser) -> bytes:
    """The bytes of the image the page shows, read back from its object URL inside the browser."""
    import base64

    script = """
        const done = arguments[arguments.length - 1];
        fetch(document.getElementById("after").src).then(r => r.arrayBuffer()).then(buffer => {
            let text = ""; new Uint8Array(buffer).forEach(b => text += String.fromCharCode(b)); done(btoa(text));
        });"""
    return base64.b64decode(browser.execute_async_script(script))


def test_the_page_upscales_a_photo_like_the_api(server, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from tests.conftest import REFERENCE_DIR

    photo = REFERENCE_DIR / "chelsea_crop_lr.png"
    if not photo.is_file():
        photo = tmp_path / "photo.png"
        photo.write_bytes(UPLOADS["rgb8.png"])
    reply = requests.get(server.url + "/", timeout=30)
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/html")
    assert "http" not in reply.text.replace(server.url, "")  # self-contained: nothing fetched from elsewhere
    assert upload_in_page(browser, server, photo, TOKEN) == ""
    shown = page_result_png(browser)
    api = upscale(server, photo.read_bytes())
    assert api.status_code == 200
    assert max_level_difference(decoded(shown), decoded(api.content)) <= 1
    height, width = decoded(api.content).shape[:2]
    assert browser.find_element(By.ID, "size").text == f"output {width}x{height}"
    assert "took" in browser.find_element(By.ID, "elapsed").text
    assert browser.find_element(By.ID, "download").get_attribute("href").startswith("blob:")
    # Hardening round 4, N: NAME_sr.png here, NAME_x4.png from msn-upscale and the static page
    assert browser.find_element(By.ID, "download").get_attribute("download") == f"{photo.stem}_x4.png"


def test_the_page_shows_the_api_errors(server, browser, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not an image at all")
    assert "400: the image is not a readable image" in upload_in_page(browser, server, text, TOKEN)
    photo = tmp_path / "photo.png"
    photo.write_bytes(UPLOADS["rgb8.png"])
    assert "401: missing or wrong bearer token" in upload_in_page(browser, server, photo, token=None)
    # The page does not change the API's contract: JSON errors, 4xx for bad input.
    assert requests.get(server.url + "/index.html", timeout=30).json()["error"].startswith("Not Found")


def test_the_page_shows_a_file_name_as_text_and_runs_only_its_own_script(server, browser, tmp_path):
    """Hardening round 3, #30: the name was inserted as HTML and its handler ran."""
    from selenium.webdriver.common.by import By

    policy = requests.get(server.url + "/", timeout=30).headers["Content-Security-Policy"]
    assert "script-src 'sha256-" in policy and "unsafe-inline" not in policy.split("script-src")[1].split(";")[0]
    photo = tmp_path / '<img src=x onerror="window.injected=1">.png'
    photo.write_bytes(UPLOADS["rgb8.png"])
    assert upload_in_page(browser, server, photo, TOKEN) == ""
    assert browser.execute_script("return window.injected === undefined")
    assert browser.find_elements(By.CSS_SELECTOR, "#status img") == []


def test_a_token_the_browser_cannot_send_is_named_on_the_page(server, browser, tmp_path):
    """Hardening round 3, #31: "the service could not be reached: TypeError"."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(UPLOADS["rgb8.png"])
    assert "the token can hold only letters, digits and ASCII punctuation" in upload_in_page(
        browser, server, photo, "t\u00f8ken")


def test_the_same_file_chosen_again_after_a_401_is_sent_with_the_token(server, browser, tmp_path):
    """Hardening round 3, #32: choosing the same file again did nothing."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    photo = tmp_path / "photo.png"
    photo.write_bytes(UPLOADS["rgb8.png"])
    assert "401" in upload_in_page(browser, server, photo, token=None)
    browser.find_element(By.ID, "token").send_keys(TOKEN)
    browser.find_element(By.ID, "file").send_keys(str(photo))
    shown = lambda d: d.find_element(By.ID, "size").text and not d.find_element(By.ID, "result").get_attribute(  # noqa: E731
        "class")
    WebDriverWait(browser, 120, poll_frequency=0.2).until(shown)
    assert browser.find_element(By.ID, "error").text == ""


# "On this device": the page runs the service's own graph in the browser with onnxruntime-web.
def test_the_service_gives_browsers_its_graph_and_the_runtime_files(server, random_graph):
    config = requests.get(server.url + "/web/config.json", timeout=30).json()
    assert config["available"] and config["graph"] == "/v1/model.onnx" and config["scale"] == 4
    assert (config["min_size"], config["max_pixels"]) == (29, 1_000_000)
    assert requests.get(server.url + "/v1/model.onnx", timeout=30).status_code == 401  # the model is the token's
    graph = requests.get(server.url + "/v1/model.onnx", headers=AUTH, timeout=30)
    assert graph.status_code == 200 and graph.content == random_graph.read_bytes()
    runtime = requests.get(server.url + "/web/ort/ort-wasm-simd-threaded.wasm", timeout=60)
    assert runtime.status_code == 200 and runtime.headers["content-type"] == "application/wasm"
    assert runtime.headers["Cross-Origin-Embedder-Policy"] == "require-corp"
    module = requests.get(server.url + "/web/msn-web.js", timeout=30)
    assert module.headers["content-type"].startswith("text/javascript") and "export async function" in module.text
    for name in ("package.json", "ort.wasm.min.mjs.map", "..%2F..%2F..%2Fpyproject.toml"):  # only what the page loads
        reply = requests.get(server.url + "/web/ort/" + name, timeout=30)
        assert reply.status_code == 404 and reply.json()["error"].startswith(("no runtime file", "Not Found")), name


def test_the_page_upscales_on_this_device_like_the_python_runtime(server, browser, random_graph, tmp_path):
    from selenium.webdriver.common.by import By

    rng = np.random.default_rng(11)
    lr = (rng.random((37, 53, 3)) * 255).astype(np.uint8)  # odd sizes, as photos have
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(lr))
    assert "401: missing or wrong bearer token" in upload_in_page(browser, server, photo, token=None, on_device=True)
    assert upload_in_page(browser, server, photo, TOKEN, on_device=True) == ""
    shown = decoded(page_result_png(browser))
    # The browser's result against ONNX Runtime's in Python on the graph the service gave it.
    expected = expected_png_pixels(engines.load(random_graph, backend="onnxruntime"), photo.read_bytes())
    assert shown.shape == (4 * 37, 4 * 53, 3) and max_level_difference(shown, expected) <= 1
    elapsed = browser.find_element(By.ID, "elapsed").text
    assert browser.execute_script("return crossOriginIsolated")  # so the wasm runtime runs on threads
    assert "on this device (wasm, 2 thread(s))" in elapsed or "on this device (webgpu" in elapsed, elapsed
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert all(url.startswith(server.url + "/") for url in fetched), fetched  # nothing from elsewhere
    assert not any("/v1/upscale" in url for url in fetched)  # and the photo never went to the server


def test_the_page_refuses_on_this_device_what_browsers_cannot_upscale(server, browser, tmp_path):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.new("RGB", (20, 40), "gray").save(small)
    huge = tmp_path / "huge.png"
    Image.new("RGB", (1100, 1000), "gray").save(huge)  # allowed by no browser tab: above the page's limit
    text = tmp_path / "notes.txt"
    text.write_text("not an image at all")
    assert upload_in_page(browser, server, small, TOKEN, on_device=True) == "small.png is 20x40; MSN needs at least 29x29"
    assert upload_in_page(browser, server, huge, TOKEN, on_device=True).startswith(
        "huge.png is 1100x1000 = 1,100,000 pixels; this page takes at most 1,000,000")
    assert upload_in_page(browser, server, text, TOKEN, on_device=True).startswith("notes.txt is not an image")


def test_without_a_browser_runtime_the_page_offers_the_server_only(random_graph, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    service = ServeProcess([str(random_graph)], extra_env={"MSN_ORT_WEB_DIR": str(tmp_path / "nowhere")})
    try:
        service.wait_healthy()
        config = requests.get(service.url + "/web/config.json", timeout=30).json()
        assert not config["available"] and "npm install --prefix .web onnxruntime-web@" in config["reason"]
        reply = requests.get(service.url + "/v1/model.onnx", timeout=30)
        assert reply.status_code == 404 and "offers no graph to browsers" in reply.json()["error"]
        browser.get(service.url + "/")
        note = WebDriverWait(browser, 60, poll_frequency=0.2).until(
            lambda d: "not offered" in d.find_element(By.ID, "device-note").text and d.find_element(By.ID, "device-note"))
        assert "npm install" in note.text and not browser.find_element(By.ID, "on-device").is_enabled()
        assert browser.find_element(By.ID, "on-server").is_selected()
        assert "the page's 'on this device' mode is off: this service has no onnxruntime-web" in service.output()
    finally:
        assert service.stop() == 0, service.output()[-3000:]


def test_the_load_test_command_against_a_real_service(server, tmp_path):
    from msn_deploy.validate.benches import loadtest

    folder = tmp_path / "images"
    folder.mkdir()
    (folder / "a.png").write_bytes(UPLOADS["rgb8.png"])
    out = tmp_path / "lt"
    assert loadtest.main(["--url", server.url, "--images", str(folder), "--concurrency", "1,2", "--requests", "4",
                          "--token", TOKEN, "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert [level["ok"] for level in report["levels"]] == [4, 4]
