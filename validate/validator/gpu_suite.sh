#!/usr/bin/env bash
# The GPU suite from the source tree, with no install: bash validate/validator/gpu_suite.sh [--smoke] OUT [OPTIONS]
# (OPTIONS go to python -m msn_deploy.validate.validator.gpu_suite, e.g. --budget-s 300 or --device cpu)
#
# Uses the python3 on PATH (or $PYTHON). The four folders are linked under msn_deploy/ (their installed
# name) in a temporary folder put on PYTHONPATH, with the wheels that `python -m
# msn_deploy.validate.validator.prepare_gpu_run` put in the take-along folder (default .gpu-run, or $MSN_GPU_RUN_DIR)
# unpacked beside them, for machines without a registry. Writes OUT/gpu_suite.json,
# OUT/gpu_suite.md and OUT/suite.log; the full plan stops itself within its budget (~8 min).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)

smoke=()
if [[ ${1:-} == --smoke ]]; then
    smoke=(--smoke)
    shift
fi
if [[ $# -lt 1 || $1 == -* ]]; then
    echo "usage: bash validate/validator/gpu_suite.sh [--smoke] OUT [OPTIONS]" >&2
    exit 2
fi
out=$(realpath -m "$1")  # paths are the caller's, resolved before moving to the repository
shift
take=$(realpath -m "${MSN_GPU_RUN_DIR:-$repo/.gpu-run}")
python=${PYTHON:-python3}
mkdir -p "$out"

site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
shopt -s nullglob
for wheel in "$take"/wheels/*.whl; do
    "$python" -m zipfile -e "$wheel" "$site"
done
mkdir "$site/msn_deploy"
for package in msn export engines validate; do
    ln -s "$repo/$package" "$site/msn_deploy/$package"
done
cd "$repo"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

"$python" -m msn_deploy.validate.validator.gpu_suite "${smoke[@]}" --take-along "$take" --out "$out" "$@" 2>&1 | tee "$out/suite.log"
