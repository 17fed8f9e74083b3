#!/usr/bin/env bash
# The prepared GPU check (tools/dev/gpu_check.py): unit tests on CUDA, NCCL
# torchrun with bf16 AMP and --resume, k-means speed, the science run.
#
#   bash tools/dev/make_gpu_wheels.sh              # here, once: fills .whl/
#   bash tools/dev/gpu_check.sh [--cpu] [--out DIR] [--budget-s N] [...]
#
# On a bare CUDA + PyTorch image (Python 3.12, numpy 2, no network) it
# installs .whl/*.whl with pip --no-index into $HIRL_MM_SITE (default
# /tmp/hirl_mm_site), puts that and the checkout on PYTHONPATH and reads
# Fashion-MNIST from .whl/fmnist. Without wheels it uses the Python's own
# packages. PYTHON picks the interpreter (default python3). All options:
# python3 tools/dev/gpu_check.py --help.
set -uo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
PY=${PYTHON:-python3}
WHEELS=${HIRL_MM_WHEELS:-$ROOT/.whl}
SITE=${HIRL_MM_SITE:-/tmp/hirl_mm_site}

if compgen -G "$WHEELS/*.whl" >/dev/null; then
  echo "[gpu_check] installing $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE" >&2
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target "$SITE" "$WHEELS"/*.whl \
    || { echo "[gpu_check] pip could not install $WHEELS/*.whl" >&2; exit 2; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
else
  echo "[gpu_check] no wheels in $WHEELS: using $PY's own packages" >&2
fi
# hirl_mm from the checkout, before anything installed
export PYTHONPATH="$ROOT:$PYTHONPATH"
if [ -z "${HIRL_MM_FMNIST:-}" ] && [ -d "$WHEELS/fmnist" ]; then
  export HIRL_MM_FMNIST="$WHEELS/fmnist"
fi
exec "$PY" "$ROOT/tools/dev/gpu_check.py" "$@"
