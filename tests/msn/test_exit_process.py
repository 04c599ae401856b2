"""msn.cli.exit_process, the end of every console command: its code, the exit handlers run, what was
printed flushed, and a thread that Python waits for is waited for."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import atexit, sys, threading, time
from pathlib import Path
from msn_deploy.msn.cli import exit_process
out = Path(sys.argv[1])
atexit.register(lambda: (out / "handler").write_text("ran"))
print("printed, not yet flushed", end="")
if sys.argv[2] == "thread":
    def finish_later():
        time.sleep(0.5)  # the main thread is in exit_process by then
        (out / "thread").write_text("finished")
    threading.Thread(target=finish_later).start()
exit_process(3)
"""


def run(tmp_path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), mode], capture_output=True, text=True,
                          timeout=60)


def test_a_finished_command_keeps_its_code_handlers_and_output(tmp_path):
    done = run(tmp_path, "plain")
    assert done.returncode == 3 and done.stdout == "printed, not yet flushed"
    assert (tmp_path / "handler").read_text() == "ran"


def test_a_thread_python_waits_for_is_waited_for(tmp_path):
    done = run(tmp_path, "thread")
    assert done.returncode == 3 and (tmp_path / "thread").read_text() == "finished"
    assert (tmp_path / "handler").read_text() == "ran"
