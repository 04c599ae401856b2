#!/usr/bin/env bash
# Install everything the test command needs on a fresh Debian/Ubuntu machine: the C++ library's
# system packages (apt, as root or through sudo), then .venv with the project and every extra.
# Used by the README's first command and by CI alike.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if command -v apt-get >/dev/null; then
  # chromium and its driver: the tests drive the service's web page in a real headless browser.
  # mesa-vulkan-drivers (lavapipe, a Vulkan device on the CPU) and the loader: ncnn's Vulkan path.
  # libgs-common: Ghostscript's ICC profiles, a real CMYK press profile for the image tests.
  packages="g++ libpng-dev nlohmann-json3-dev libgtest-dev chromium chromium-driver mesa-vulkan-drivers libvulkan1 libgs-common"
  # npm fetches onnxruntime-web for the in-browser upscaler (engines/web); a Node.js that bundles
  # npm (NodeSource's) conflicts with Debian's npm package, so it is asked for only when missing.
  command -v npm >/dev/null || packages="$packages npm"
  python3 -c "import ensurepip" 2>/dev/null || packages="$packages python3-venv"
  echo "setup: installing system packages: $packages"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $packages >/dev/null
else
  echo "setup: no apt-get here; install a C++17 compiler, libpng, nlohmann-json and GoogleTest yourself" >&2
fi

python3 -m venv .venv
. .venv/bin/activate
echo "setup: installing Python packages into .venv"
# torch 2.13.0 is the CPU build here; pin it before anything pulls a CUDA build. (Not the spandrel
# extra: spandrel needs torchvision, and the registries here hold only CUDA torchvision builds,
# which do not load against the CPU torch; its tests skip with that reason.)
python -m pip install -q torch==2.13.0
python -m pip install -q -e ".[dev,cpu,rtx,video,triton,serve,jobs,ncnn]"
# configobj 5.0.9 ships a top-level `validate` package: tests/test_install.py installs the project's
# wheel beside it in a fresh environment, from this folder (git-ignored), with no registry.
python -m pip download -q --no-deps -d .whl "configobj==5.0.9"
# A real tritonserver (2.51, CPU-capable) for the Triton tests, from the nvidia-pytriton wheel. It
# pins numpy<2, so it goes into its own folder without its dependencies; its Python-backend stub
# for this interpreter is put where the backend looks for it.
python -m pip install -q --no-deps --upgrade --target .triton "nvidia-pytriton==0.7.0"
py=$(python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cp ".triton/pytriton/tritonserver/python_backend_stubs/$py/triton_python_backend_stub" .triton/pytriton/tritonserver/backends/python/
# chaiNNer's own ncnn build (the tests run the ncnn export in it, as chaiNNer does), in a folder of its
# own: the wheel also ships a top-level `ncnn` that would shadow the current one.
python -m pip install -q --no-deps --upgrade --target .chainner-ncnn \
  "$(python -c 'from msn_deploy.validate.core.chainner_ncnn import CHAINNER_NCNN; print(CHAINNER_NCNN)')"
# onnxruntime-web, pinned (msn_deploy.engines.web.ORT_WEB_VERSION), under .web/ (git-ignored)
npm install --silent --no-audit --no-fund --prefix .web "onnxruntime-web@$(python -c 'from msn_deploy.engines.web import ORT_WEB_VERSION; print(ORT_WEB_VERSION)')"
echo "setup: done; activate with: . .venv/bin/activate"
