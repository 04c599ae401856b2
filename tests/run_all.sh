#!/usr/bin/env bash
# The README's test command: ruff (lint and import order), the Python suite, then the C++ library's ctest.
set -uo pipefail
cd "$(dirname "$0")/.."
# Use the project's environment (made by .ci/setup.sh) unless another one is active.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  . .venv/bin/activate
fi
python -m ruff check . || exit 1
python -m pytest -q -ra tests
status=$?
# pytest exits 5 when it collected nothing: that is a failure of this suite, not a pass.
[ "$status" -eq 0 ] || exit "$status"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release | grep "msn_infer" || exit 1
cmake --build build -j2 >/dev/null || exit 1
ctest --test-dir build --output-on-failure || exit 1
