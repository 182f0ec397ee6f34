#!/usr/bin/env bash
# Creates .venv (if missing) and installs protoseg with its dev tools, CPU-only.
# torch is installed first and pinned by constraints-cpu.txt, so no package can pull CUDA wheels.
# GPU clusters: use environment.yml instead (pip's CUDA build of the same torch, in a conda env).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
SECONDS=0
step() { echo "[install.sh ${SECONDS}s] $*"; }
if [ ! -x .venv/bin/python ]; then
  step "1/4 creating .venv with $PY"
  "$PY" -m venv .venv
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
# pip warns for every package about the machine's empty local index mirrors: filter that noise only.
quiet() { "$@" 2>&1 | grep --line-buffered -v "is ignored: it is neither a file nor a directory" || true; return "${PIPESTATUS[0]}"; }
step "2/4 installing CPU torch 2.13.0 (the largest download, about 200 MB; pip lists each package)"
quiet .venv/bin/pip install "torch==2.13.0"
step "3/4 installing protoseg and its tools (Snakemake, DVC, MLflow, timm, transformers, pytest): several minutes"
quiet .venv/bin/pip install -c constraints-cpu.txt -e ".[dev]"
# DVC's `dvc repro --dry` fails on a fresh clone (treeverse/dvc#9818): a .pth file patches it (protoseg/_dvc_compat.py)
.venv/bin/python -c "from protoseg._dvc_compat import write_pth; print(write_pth())"
step "4/4 checking the environment"
.venv/bin/python - <<'PY'
import torch
assert torch.__version__.startswith("2.13.0"), f"expected the local CPU torch 2.13.0, got {torch.__version__}"
print(f"protoseg environment ready: torch {torch.__version__}")
PY
step "done; activate it once per shell: source .venv/bin/activate"
