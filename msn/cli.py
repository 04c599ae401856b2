"""The one command-line convention of msn-deploy: exit codes, logging, signals, argument types.

Every command is a thin adapter over a library function and runs it through `run_cli`:

    0    success
    1    the work failed (verification below tolerance, a failed build, inputs that failed)
    2    bad usage or bad input, found before any work (argparse's own errors are 2 as well)
    130  interrupted (Ctrl-C); SIGTERM is handled like Ctrl-C, so temporary outputs are removed

The exit code of an error comes from its class (`msn.MSNError.exit_code`), never from the
command, so the same mistake means the same code everywhere.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import NoReturn

from msn_deploy.msn import MIN_INPUT_SIZE, MSNError
from msn_deploy.msn.formats.precision import PRECISIONS

log = logging.getLogger("msn")

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# Libraries that log every pass at INFO; their detail is only useful with --verbose.
_CHATTY = ("onnx_ir", "onnxscript", "torch.onnx", "torch._dynamo", "torch.export")


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that `finally` blocks (temporary files) run as on Ctrl-C."""

    def _exit(signum: int, _frame: object) -> None:
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, _exit)


def start_cli(verbose: bool = False) -> None:
    """What every command does first: logging, and SIGTERM handled like Ctrl-C."""
    setup_logging(verbose)
    exit_on_sigterm()


def run_cli(work: Callable[[], int | None], *, verbose: bool = False) -> int:
    """Run a command's work and map what it raises to the exit-code convention above.

    Only msn-deploy's own errors, interruptions and operating-system errors (a full disk, a
    vanished folder) become one-line messages; anything else is a bug and keeps its traceback.
    """
    start_cli(verbose)
    try:
        code = work()
    except MSNError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return EXIT_INTERRUPTED
    except OSError as exc:
        log.error("%s", exc)
        return EXIT_FAILED
    return EXIT_OK if code is None else code


class WorkerThread(threading.Thread):
    """A daemon thread that may be inside an engine's native code, which Python cannot interrupt:
    a command stopped by Ctrl-C or SIGTERM does not wait for it (see `exit_process`)."""

    def __init__(self, name: str) -> None:
        super().__init__(name=name, daemon=True)


def exit_process(code: int) -> NoReturn:
    """End a command's process with `code`: what a command's entry point calls with its `main()`.

    A finished command ends at once, after the exit handlers (logging's flush, Ray's shutdown,
    temporary files): the interpreter's own teardown, OpenVINO's and the thread pools' destructors,
    took 0.12-0.15 s of a 1.8 s photo (measured) and settles nothing a finished command needs. If
    a thread that Python would wait for is still running, Python exits as usual.

    After Ctrl-C, a worker thread may still be inside an engine call (a large image takes tens of
    seconds). Python's own exit would run the engines' C++ destructors under it ("terminate called
    without an active exception", exit -6), so the process then ends at once too: the outputs, their
    records and the temporary files were settled by the thread that was interrupted."""
    alive = [thread for thread in threading.enumerate() if thread.is_alive()]
    if any(isinstance(thread, WorkerThread) for thread in alive):
        logging.shutdown()
    elif any(not thread.daemon and thread is not threading.main_thread() for thread in alive):
        sys.exit(code)
    else:
        atexit._run_exitfuncs()  # what sys.exit would run first; os._exit runs none
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).fflush(None)  # what C libraries wrote to stdout/stderr
    os._exit(code)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends: for a step that must not be cut in two (an
    output and its record). Python runs signal handlers in the main thread only, so elsewhere
    this does nothing; the kernel may hand a signal to any thread, so it is held here, in Python,
    rather than masked."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    previous = {signum: signal.signal(signum, lambda number, _frame: held.append(number))
                for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if held:
            signal.raise_signal(held[0])  # now, to the handler that was there


# argparse value types: a bad value is a usage error (exit 2) before anything runs.


def add_precision_option(parser: argparse.ArgumentParser | argparse._ArgumentGroup, help: str,
                         choices: tuple[str, ...] = PRECISIONS) -> None:
    """`--precision NAME`, the one spelling of every command (export, run, serve, site), and `--fp16`,
    its short form that the export commands had, for `--precision fp16`; one or the other. Without
    either, `precision` is None: the command's default (argparse would not see a conflict between
    the two if one of them gave a value equal to a default)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--precision", choices=choices, help=help)
    group.add_argument("--fp16", dest="precision", action="store_const", const="fp16", help="--precision fp16")


def _whole_number(text: str, minimum: int) -> int:
    """An integer, also written as 1e9 or 2.5e6 (large counts, e.g. pixels, are typed that way)."""
    try:
        value = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer()):
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        value = int(number)
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
    return value


def positive_int(text: str) -> int:
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    return _whole_number(text, 0)


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a number > 0, got 0")
    return value


def port_number(text: str) -> int:
    value = non_negative_int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 1 to 65535, got {value}")
    return value


def host_port(text: str) -> str:
    """HOST:PORT of a service to join, e.g. 10.0.0.5:6379 (or "local", which --ray uses for its
    no-address form)."""
    if text == "local":
        return text
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535 or any(c.isspace() for c in host):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT such as 10.0.0.5:6379, got {text!r}")
    return text


_HW = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*")
_NHW = re.compile(r"\s*(\d+)\s*[xX]\s*(\d+)\s*[xX]\s*(\d+)\s*")


def hw_size(text: str) -> tuple[int, int]:
    """HEIGHTxWIDTH in LR px, e.g. 360x640 (height first, everywhere in msn-deploy)."""
    match = _HW.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected HxW (height x width) such as 360x640, got {text!r}")
    h, w = int(match[1]), int(match[2])
    if min(h, w) < MIN_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"{h}x{w} is below MSN's minimum of {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} LR px")
    return h, w


def hw_sizes(text: str) -> list[tuple[int, int]]:
    """Comma-separated HxW sizes, e.g. 128x128,360x640."""
    try:
        return [hw_size(part) for part in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (in {text!r}: comma-separated HxW sizes such as "
                                         "128x128,360x640)") from None


def display_size(text: str) -> tuple[int, int]:
    """WIDTHxHEIGHT of a picture, e.g. 3840x2160: the one size written width first, because it
    names an output resolution as screens and videos are named, not a tensor's H and W."""
    match = _HW.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 3840x2160, got {text!r}")
    return int(match[1]), int(match[2])


def nhw_shape(text: str) -> tuple[int, int, int]:
    """BATCHxHEIGHTxWIDTH, e.g. 1x360x640 (a TensorRT profile point)."""
    match = _NHW.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected NxHxW such as 1x360x640, got {text!r}")
    n, h, w = (int(g) for g in match.groups())
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text}: the batch must be at least 1")
    if min(h, w) < MIN_INPUT_SIZE:
        raise argparse.ArgumentTypeError(f"{text} is below MSN's minimum of {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE} LR px")
    return n, h, w


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as preset=veryfast, got {text!r}")
    return key.strip(), value.strip()
