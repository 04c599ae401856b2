#!/usr/bin/env bash
# The README's test command: ruff (lint and import order), the Python suite, then the C++ library's ctest.
#   bash tests/run_all.sh           everything (CI runs this)
#   bash tests/run_all.sh --quick   ruff and the tests that start no service and build nothing (minutes;
#                                   run it after each edit)
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") quick=0 ;;
  --quick) quick=1 ;;
  *) echo "usage: bash tests/run_all.sh [--quick]" >&2; exit 2 ;;
esac
# Use the project's environment (made by .ci/setup.sh) unless another one is active.
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ]; then
  . .venv/bin/activate
fi
python -m ruff check . || exit 1
if [ "$quick" -eq 1 ]; then
  python -m pytest -q -ra -m "not slow and not service and not build and not gpu" --durations=25 tests
  exit $?
fi
python -m pytest -q -ra --durations=30 tests
status=$?
# pytest exits 5 when it collected nothing: that is a failure of this suite, not a pass.
[ "$status" -eq 0 ] || exit "$status"
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release | grep "msn_infer" || exit 1
cmake --build build -j2 >/dev/null || exit 1
ctest --test-dir build --output-on-failure || exit 1
