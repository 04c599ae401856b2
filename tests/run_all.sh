#!/usr/bin/env bash
# The README's test command: the Python suite, then the C++ library's ctest.
set -uo pipefail
cd "$(dirname "$0")/.."
python -m pytest -q -ra tests
status=$?
# pytest exits 5 when it collected nothing: that is a failure of this suite, not a pass.
[ "$status" -eq 0 ] || exit "$status"
if [ -f CMakeLists.txt ]; then
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null && cmake --build build -j2 >/dev/null && ctest --test-dir build --output-on-failure || exit 1
fi
