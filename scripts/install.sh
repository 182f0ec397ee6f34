#!/usr/bin/env bash
# Creates .venv (if missing) and installs protoseg with its dev tools, CPU-only.
# torch is installed first and pinned by constraints-cpu.txt, so no package can pull CUDA wheels.
# GPU clusters: use environment.yml instead (conda brings a CUDA PyTorch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip warns for every package about the machine's empty local index mirrors: filter that noise only.
quiet() { "$@" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true; return "${PIPESTATUS[0]}"; }
quiet .venv/bin/pip install -q "torch==2.13.0"
quiet .venv/bin/pip install -q -c constraints-cpu.txt -e ".[dev]"
.venv/bin/python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"expected the local CPU torch 2.13.0, got {torch.__version__}"
print(f"protoseg environment ready: torch {torch.__version__}")
PY
