"""Serve this folder on 127.0.0.1 with the headers that make the page cross-origin isolated (the
wasm backend then runs on several threads) and confine it to this folder. Any static host works;
set the same headers there.

    python serve.py [--port 8080]
"""

import argparse
import functools
import http.server
from pathlib import Path

HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    # the page's own scripts and the runtime's wasm, nothing from elsewhere; photos stay in blob: URLs
    "Content-Security-Policy": "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; worker-src 'self' blob:; "
                               "style-src 'unsafe-inline'; img-src blob: data:; connect-src 'self' blob: data:; "
                               "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
}


class Handler(http.server.SimpleHTTPRequestHandler):
    def end_headers(self) -> None:
        for name, value in HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535 (0: any free port), not {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=port_number, default=8080, help="0: any free port")
    args = parser.parse_args()
    Handler.extensions_map[".mjs"] = "text/javascript"
    handler = functools.partial(Handler, directory=str(Path(__file__).resolve().parent))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    except OSError as exc:
        parser.exit(2, f"serve.py: cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; "
                       "another server may have it: try --port 0\n")
    with server:
        print(f"serving http://127.0.0.1:{server.server_address[1]}/", flush=True)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
