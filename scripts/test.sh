#!/usr/bin/env bash
# The project's test command (README): the default suite, CPU only, a few minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 DVC_NO_ANALYTICS=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
exec .venv/bin/python -m pytest -n 2 --timeout 900 "$@"
