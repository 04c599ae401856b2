"""Run a measurement in a fresh Python process, as a person's command starts: nothing imported,
nothing compiled, the caches on disk only. The snippet prints one JSON line last."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from msn_deploy.msn import MSNError


def json_from_fresh_process(code: str, *args: str, env: dict[str, str] | None = None,
                            timeout: float = 1800) -> dict:
    """The JSON object that `python -c code args...` prints on its last line; MSNError naming the
    snippet's last error line when it fails."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=os.environ | (env or {}), timeout=timeout)
    if done.returncode != 0:
        raise MSNError(f"a measuring process failed ({' '.join(args)}): "
                       f"{' '.join(done.stderr.strip().splitlines()[-1:])}")
    return json.loads(done.stdout.strip().splitlines()[-1])
