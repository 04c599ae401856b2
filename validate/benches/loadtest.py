"""Load-test an MSN HTTP service (python -m msn_deploy.engines.serve): throughput, latency percentiles and
errors by status at several concurrency levels, as JSON + Markdown.

    msn-loadtest --url http://127.0.0.1:8000 --images photos/ --concurrency 1,4,16 --requests 64

Each level sends --requests uploads from that many client threads, cycling through the images,
after a warm-up that is not counted (every image, twice from every thread). A client retries on 503 and on a
dropped connection (up to --retries times, honouring Retry-After), as a production client should;
every failed attempt is counted by status, and latency runs from the first attempt to the answer.
"""

from __future__ import annotations

import argparse
import logging
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests

from msn_deploy.engines.media.images import IMAGE_SUFFIXES, decode_image
from msn_deploy.engines.serve.settings import token_from
from msn_deploy.msn import MissingFileError, MSNError
from msn_deploy.msn.cli import EXIT_FAILED, non_negative_int, positive_int, run_cli
from msn_deploy.msn.files import check_writable
from msn_deploy.validate.core.machine import machine_info, machine_line
from msn_deploy.validate.core.reports import write_report
from msn_deploy.validate.core.tables import markdown_table

log = logging.getLogger("msn.loadtest")

SCHEMA = "msn-loadtest/1"
RETRIED_STATUSES = (503,)
MAX_BACKOFF_S = 2.0


class ServiceUnreachable(MSNError):
    """No MSN service answers at the URL (exit 1: the load test could not run)."""


@dataclass
class Outcome:
    index: int
    status: int | str  # the final answer's HTTP status, or "connection" when none came
    latency_s: float
    failed_attempts: list[int | str] = field(default_factory=list)
    body: bytes | None = None


class Client:
    """One requests.Session per thread (sessions are not thread-safe), bearer token if given."""

    def __init__(self, url: str, token: str | None, timeout_s: float, retries: int) -> None:
        self.upscale_url = url.rstrip("/") + "/v1/upscale"
        self.headers = {"Content-Type": "application/octet-stream"}
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.timeout_s = timeout_s
        self.retries = retries
        self._local = threading.local()
        self._lock = threading.Lock()
        self.answered = 0  # requests finished so far, warm-up included (for progress)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def send(self, index: int, body: bytes, keep_body: bool = False) -> Outcome:
        outcome = self._send(index, body, keep_body)
        with self._lock:
            self.answered += 1
        return outcome

    def _send(self, index: int, body: bytes, keep_body: bool) -> Outcome:
        start = time.perf_counter()
        failed: list[int | str] = []
        for attempt in range(self.retries + 1):
            try:
                reply = self._session().post(self.upscale_url, data=body, headers=self.headers,
                                             timeout=self.timeout_s)
            except (requests.ConnectionError, requests.Timeout):
                status: int | str = "connection"
                self._local.session = requests.Session()  # the old connection is gone
                wait = 0.1 * (attempt + 1)
            else:
                status = reply.status_code
                if status not in RETRIED_STATUSES:
                    return Outcome(index, status, time.perf_counter() - start, failed,
                                   reply.content if keep_body else None)
                wait = float(reply.headers.get("Retry-After", 0.1 * (attempt + 1)))
            failed.append(status)
            if attempt < self.retries:
                time.sleep(min(wait, MAX_BACKOFF_S))
        return Outcome(index, failed[-1], time.perf_counter() - start, failed[:-1])


def warm_up_count(concurrency: int, images: int) -> int:
    return 2 * max(concurrency, 4) * images


def run_level(client: Client, bodies: list[bytes], concurrency: int, count: int,
              keep_bodies: bool = False) -> tuple[list[Outcome], float]:
    """`count` uploads from `concurrency` threads; wall seconds. A warm-up comes first, every image
    from every thread at least twice, so that replicas that compile per shape (OpenVINO) have
    compiled, at the batch sizes this concurrency makes, before the clock starts."""
    with ThreadPoolExecutor(concurrency) as pool:
        warm_up = range(warm_up_count(concurrency, len(bodies)))
        list(pool.map(lambda i: client.send(i, bodies[i % len(bodies)]), warm_up))
        start = time.perf_counter()
        outcomes = list(pool.map(lambda i: client.send(i, bodies[i % len(bodies)], keep_bodies), range(count)))
        return outcomes, time.perf_counter() - start


def summarize(concurrency: int, outcomes: list[Outcome], seconds: float) -> dict[str, object]:
    ok = [o.latency_s * 1000 for o in outcomes if o.status == 200]
    final: dict[str, int] = {}
    attempts: dict[str, int] = {}
    for o in outcomes:
        final[str(o.status)] = final.get(str(o.status), 0) + 1
        for status in o.failed_attempts:
            attempts[str(status)] = attempts.get(str(status), 0) + 1
    percentiles = dict(zip(("p50", "p95", "p99"), np.percentile(ok, [50, 95, 99]).tolist())) if ok else {}
    return {
        "concurrency": concurrency,
        "requests": len(outcomes),
        "ok": len(ok),
        "seconds": seconds,
        "throughput_rps": len(ok) / seconds if seconds > 0 else 0.0,
        "latency_ms": {**percentiles, "mean": float(np.mean(ok)) if ok else None},
        "final_status": final,
        "retried_attempts": attempts,
    }


def markdown(report: dict) -> str:
    info = report["service"]
    lines = [
        (f"Service: {info.get('model')} on {info.get('backend')} {info.get('precision')}, "
         f"{info.get('replicas')} replica(s), max batch {info.get('max_batch')}, "
         f"batch wait {info.get('batch_wait_ms')} ms; images: {', '.join(report['image_sizes'])}"),
        f"Machine: {report['machine_line']}",
        "",
    ]
    rows = []
    for level in report["levels"]:
        lat = level["latency_ms"]
        errors = {k: v for k, v in level["final_status"].items() if k != "200"}
        rows.append((level["concurrency"], level["requests"], level["ok"], f"{level['throughput_rps']:.2f}",
                     *(f"{lat[p]:.0f}" if lat.get(p) is not None else "-" for p in ("p50", "p95", "p99")),
                     _counts(errors), _counts(level["retried_attempts"])))
    lines += markdown_table(["concurrency", "requests", "ok", "throughput (req/s)", "p50 (ms)", "p95 (ms)", "p99 (ms)",
                             "final errors", "retried"], rows)
    return "\n".join(lines) + "\n"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{n}x {status}" for status, n in sorted(counts.items())) or "none"


def concurrency_list(text: str) -> list[int]:
    try:
        values = [positive_int(part.strip()) for part in text.split(",") if part.strip()]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"--concurrency: {exc} (e.g. 1,4,16)") from None
    if not values:
        raise argparse.ArgumentTypeError("--concurrency needs at least one level, e.g. 1,4,16")
    return values


def http_url(text: str) -> str:
    parts = urlparse(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise argparse.ArgumentTypeError(f"expected a URL such as http://127.0.0.1:8000, got {text!r}")
    return text.rstrip("/")


def read_images(folder: Path) -> tuple[list[bytes], list[str]]:
    if not folder.is_dir():
        raise MissingFileError(f"--images {folder} is not a folder")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise MissingFileError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
    return [p.read_bytes() for p in files], [p.name for p in files]


def service_info(url: str, token: str | None, timeout_s: float) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        reply = requests.get(url + "/v1/info", headers=headers, timeout=timeout_s)
    except requests.RequestException as exc:
        raise ServiceUnreachable(f"no MSN service answers at {url} ({type(exc).__name__}); start one with "
                              "python -m msn_deploy.engines.serve MODEL") from None
    if reply.status_code != 200:
        raise ServiceUnreachable(f"{url}/v1/info answered {reply.status_code}: {reply.text[:200]}")
    return reply.json()


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="msn-loadtest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", type=http_url, required=True, help="the service, e.g. http://127.0.0.1:8000")
    p.add_argument("--images", type=Path, required=True, help="folder of images to upload")
    p.add_argument("--concurrency", type=concurrency_list, default=[1, 4, 16], help="levels, e.g. 1,4,16")
    p.add_argument("--requests", type=positive_int, default=64, help="requests per level")
    p.add_argument("--retries", type=non_negative_int, default=5, help="retries on 503 or a dropped connection")
    p.add_argument("--timeout", type=positive_int, default=120, help="seconds per attempt")
    p.add_argument("--token", help="bearer token (default: $MSN_SERVE_TOKEN)")
    p.add_argument("--out", type=Path, default=Path("reports/loadtest"), help="writes OUT.json and OUT.md")
    p.add_argument("-v", "--verbose", action="store_true")
    return p.parse_args(argv)


def load_test(url: str, bodies: list[bytes], names: list[str], concurrency: list[int], requests_per_level: int,
              *, token: str | None = None, retries: int = 5, timeout_s: float = 120) -> dict:
    """Run every concurrency level against the service at `url`; the report as a JSON-able dict."""
    info = service_info(url, token, timeout_s)
    sizes = [f"{image.rgb.shape[1]}x{image.rgb.shape[0]}" for image in map(decode_image, bodies)]
    client = Client(url, token, timeout_s, retries)
    levels = []
    for level_concurrency in concurrency:
        outcomes, seconds = run_level(client, bodies, level_concurrency, requests_per_level)
        level = summarize(level_concurrency, outcomes, seconds)
        log.info("concurrency %d: %d/%d ok, %.2f req/s, p50 %s ms", level_concurrency, level["ok"],
                 level["requests"], level["throughput_rps"], f"{level['latency_ms'].get('p50', float('nan')):.0f}")
        levels.append(level)
    machine = machine_info()
    return {"schema": SCHEMA, "url": url, "service": info, "images": names, "image_sizes": sizes,
            "retries": retries, "machine": machine, "machine_line": machine_line(machine), "levels": levels}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def work() -> int:
        json_path, md_path = args.out.with_suffix(".json"), args.out.with_suffix(".md")
        for path in (json_path, md_path):
            path.parent.mkdir(parents=True, exist_ok=True)
            check_writable(path)
        bodies, names = read_images(args.images)
        report = load_test(args.url, bodies, names, args.concurrency, args.requests, token=token_from(args.token),
                           retries=args.retries, timeout_s=args.timeout)
        page = markdown(report)
        write_report(args.out.parent, args.out.stem, report, page)
        print(page)
        log.info("wrote %s and %s", json_path, md_path)
        return 0 if all(level["ok"] == level["requests"] for level in report["levels"]) else EXIT_FAILED

    return run_cli(work, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
