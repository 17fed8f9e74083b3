#!/usr/bin/env bash
# Set up the project's virtual environment (idempotent).
#
#   bash tools/setup_env.sh               # creates ./.venv
#   bash tools/setup_env.sh --print-plan  # prints what it would install, then exits
#
# On a host with an NVIDIA GPU it installs faiss-gpu for torch's CUDA (where
# PyPI has a wheel) and builds mmcv's ops for CUDA (when an nvcc of torch's
# CUDA major is there); elsewhere faiss-cpu and mmcv's CPU ops.
#
# Environment:
#   HIRL_MM_VENV         where the venv lives. Defaults to <repo>/.venv.
#   HIRL_MM_WHEEL_CACHE  where built mmcv wheels are cached, one folder per
#                        mmcv, torch, CPU/CUDA (and GPU arch), Python version.
#                        Defaults to ~/.cache/hirl_mm/wheels.
#   HIRL_MM_SKIP_APT=1   do not apt-get the Fashion-MNIST package.
#   HIRL_MM_FAISS        the faiss package to install (e.g. faiss-gpu-cu12).
#   HIRL_MM_MMCV_OPS     cpu or cuda: mmcv's ops, instead of the choice below.
# Probes, each overrides its detection (tests fake them with these):
#   HIRL_MM_GPU          1 / 0: a GPU is visible (nvidia-smi -L, then
#                        torch.cuda.is_available()).
#   HIRL_MM_TORCH        torch's version and CUDA, e.g. "2.14.1+cu130 13.0"
#                        or "2.14.1+cpu none" (the venv's torch).
#   HIRL_MM_NVCC         the nvcc for mmcv's CUDA ops, or "none"
#                        ($CUDA_HOME/bin/nvcc, else nvcc on PATH).
#   TORCH_CUDA_ARCH_LIST the GPUs' compute capabilities for CUDA ops, "8.0;9.0"
#                        (nvidia-smi, then torch.cuda).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${HIRL_MM_VENV:-$ROOT/.venv}
WHEELS=${HIRL_MM_WHEEL_CACHE:-$HOME/.cache/hirl_mm/wheels}
MMCV_VERSION=2.1.0
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
PLAN_ONLY=0
case "${1:-}" in
  --print-plan) PLAN_ONLY=1 ;;
  -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "setup_env.sh: unknown argument '$1' (--print-plan, --help)" >&2; exit 2 ;;
esac

log() { echo "[setup_env] $*" >&2; }

# ---- probes -----------------------------------------------------------------
probe_gpu() {  # 1 when nvidia-smi lists a GPU, else torch decides later
  if [ -n "${HIRL_MM_GPU:-}" ]; then echo "$HIRL_MM_GPU"
  elif command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; then echo 1
  else echo unknown; fi
}
probe_torch() {  # "VERSION CUDA GPU ARCHS": CUDA is "none" for a CPU build
  if [ -n "${HIRL_MM_TORCH:-}" ]; then echo "$HIRL_MM_TORCH unknown none"; return; fi
  "$1" -c 'import torch; c = torch.cuda; n = c.device_count() if c.is_available() else 0
print(torch.__version__, torch.version.cuda or "none", int(n > 0),
      ";".join(sorted({"%d.%d" % c.get_device_capability(i) for i in range(n)})) or "none")' \
    2>/dev/null || echo "none none unknown none"
}
probe_arch() {  # the GPUs' compute capabilities, "8.0;9.0", for CUDA ops
  local archs=${TORCH_CUDA_ARCH_LIST:-}
  if [ -z "$archs" ] && command -v nvidia-smi >/dev/null; then
    archs=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | sort -u | paste -sd';' || true)
  fi
  [ -n "$archs" ] && [ "$archs" != none ] && echo "$archs" || echo "$1"
}
probe_nvcc() {
  local nvcc=${HIRL_MM_NVCC:-}
  if [ -z "$nvcc" ]; then
    nvcc=none
    if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then nvcc=$CUDA_HOME/bin/nvcc
    elif command -v nvcc >/dev/null; then nvcc=$(command -v nvcc); fi
  fi
  echo "$nvcc"
}
nvcc_version() {  # "13.0" from "Cuda compilation tools, release 13.0, V13.0.88"
  [ "$1" = none ] && { echo none; return; }
  "$1" --version 2>/dev/null | sed -n 's/.*release \([0-9][0-9.]*\),.*/\1/p' | head -n1 | grep . || echo none
}

# ---- decisions --------------------------------------------------------------
# Sets GPU, TORCH_VERSION, TORCH_CUDA, NVCC, NVCC_VERSION, OPS, ARCHS, OPS_TAG, FAISS,
# KEY; logs why when a GPU host gets less than it could.
plan() {
  local python=$1 gpu torch_gpu torch_archs
  gpu=$(probe_gpu)
  read -r TORCH_VERSION TORCH_CUDA torch_gpu torch_archs <<<"$(probe_torch "$python")"
  [ "$gpu" = unknown ] && gpu=$torch_gpu
  [ "$gpu" = 1 ] && GPU=1 || GPU=0
  NVCC=$(probe_nvcc)
  NVCC_VERSION=$(nvcc_version "$NVCC")
  local what_fails="mmcv.ops' CUDA kernels (RoIAlign, NMS, DeformConv, ...: MMDetection's \
Mask / Faster R-CNN and MMSegmentation configs that use them) fail on CUDA tensors; hirl_mm's \
pre-training (HIRL, HCSC, SS-PRL, DINO, iBOT) uses no mmcv op and runs on the GPU"
  OPS=cpu
  if [ -n "${HIRL_MM_MMCV_OPS:-}" ]; then
    OPS=$HIRL_MM_MMCV_OPS
    case "$OPS" in
      cpu) ;;
      cuda) [ "$NVCC_VERSION" != none ] || { log "error: HIRL_MM_MMCV_OPS=cuda needs nvcc (HIRL_MM_NVCC or CUDA_HOME)"; return 1; } ;;
      *) log "error: HIRL_MM_MMCV_OPS must be cpu or cuda, got '$OPS'"; return 1 ;;
    esac
  elif [ "$GPU" = 1 ]; then
    if [ "$TORCH_CUDA" = none ]; then
      log "GPU visible but torch $TORCH_VERSION is a CPU build: mmcv with CPU ops; $what_fails only with a CUDA torch"
    elif [ "$NVCC_VERSION" = none ]; then
      log "GPU visible but no nvcc (pip's torch ships none): mmcv with CPU ops only, so $what_fails. For CUDA ops install the CUDA $TORCH_CUDA toolkit, set CUDA_HOME and rerun."
    elif [ "${NVCC_VERSION%%.*}" != "${TORCH_CUDA%%.*}" ]; then
      log "nvcc $NVCC_VERSION ($NVCC) does not match torch's CUDA $TORCH_CUDA: mmcv with CPU ops only, so $what_fails. Set HIRL_MM_NVCC to a CUDA ${TORCH_CUDA%%.*}.x nvcc and rerun."
    else
      OPS=cuda
    fi
  fi
  # CUDA ops run only on the compute capabilities they were built for
  # (TORCH_CUDA_ARCH_LIST, else the visible GPUs'): part of the key.
  OPS_TAG=cpu ARCHS=none
  if [ "$OPS" = cuda ]; then
    ARCHS=$(probe_arch "$torch_archs")
    local sm=${ARCHS//[.+]/}
    [ "$ARCHS" = none ] && sm=default
    sm=${sm//[; ]/_}
    OPS_TAG=cu${NVCC_VERSION//./}-sm$sm
  fi
  # PyPI has faiss-gpu wheels for CUDA 11 and 12 only (faiss-gpu-cu11 / -cu12).
  if [ -n "${HIRL_MM_FAISS:-}" ]; then
    FAISS=$HIRL_MM_FAISS
  elif [ "$GPU" = 1 ] && [ "$TORCH_CUDA" != none ]; then
    case "${TORCH_CUDA%%.*}" in
      11|12) FAISS=faiss-gpu-cu${TORCH_CUDA%%.*} ;;
      *) FAISS=faiss-cpu
         log "no faiss-gpu wheel on PyPI for torch's CUDA $TORCH_CUDA (only CUDA 11 / 12): faiss-cpu. The prototype hook's k-means backend 'torch' (the default) runs on the GPU anyway; only backend='faiss' runs on the CPU. HIRL_MM_FAISS=faiss-gpu-cu12 tries the CUDA 12 build (its own CUDA 12 runtime) instead." ;;
    esac
  else
    FAISS=faiss-cpu
  fi
  local pytag
  pytag=$("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])' 2>/dev/null || echo unknown)
  KEY=mmcv$MMCV_VERSION-torch$TORCH_VERSION-$OPS_TAG-$pytag
}

# A wheel built before the cache had keys: $WHEELS/mmcv-X-cpYY-*.whl. It is
# taken for the CPU key only when its ops link no CUDA library.
legacy_cpu_wheel() {
  local pytag=${KEY##*-} whl
  for whl in "$WHEELS/mmcv-$MMCV_VERSION-$pytag"-*.whl; do
    [ -f "$whl" ] || continue
    "$1" - "$whl" <<'EOF' && { echo "$whl"; return; }
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as whl:
    exts = [n for n in whl.namelist() if n.startswith('mmcv/_ext')]
    sys.exit(not exts or any(b'libcudart' in whl.read(n)
                             or b'libtorch_cuda' in whl.read(n) for n in exts))
EOF
  done
}

if [ "$PLAN_ONLY" = 1 ]; then
  PYTHON_FOR_PLAN=$PY
  [ -x "$VENV/bin/python" ] && PYTHON_FOR_PLAN=$VENV/bin/python
  plan "$PYTHON_FOR_PLAN"
  WHEEL=$(ls "$WHEELS/$KEY"/mmcv-*.whl 2>/dev/null | head -n1 || true)
  if [ -n "$WHEEL" ]; then SOURCE=cached
  elif [ "$OPS" = cpu ] && [ -d "$WHEELS" ] && WHEEL=$(legacy_cpu_wheel "$PYTHON_FOR_PLAN") && [ -n "$WHEEL" ]; then
    SOURCE="legacy (copied into $WHEELS/$KEY)"
  else WHEEL=none; SOURCE=build; fi
  printf '%s\n' "gpu=$GPU" "torch=$TORCH_VERSION" "torch_cuda=$TORCH_CUDA" \
    "nvcc=$NVCC" "nvcc_version=$NVCC_VERSION" "mmcv_ops=$OPS" "cuda_archs=$ARCHS" "faiss=$FAISS" \
    "wheel_key=$KEY" "wheel_dir=$WHEELS/$KEY" "wheel=$WHEEL" "wheel_source=$SOURCE"
  exit 0
fi

# Embedded default data: Debian ships the full Fashion-MNIST.
if [ -z "${HIRL_MM_SKIP_APT:-}" ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
    && command -v apt-get >/dev/null; then
  log "installing dataset-fashion-mnist with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || log "warning: dataset-fashion-mnist not installed; give HierarchicalFashionMNIST a source_root"
fi

# Skip everything when neither the requirements nor the host's GPU / nvcc
# changed since the last run (a venv on a shared disk seen from a login node
# and from GPU nodes).
STAMP="$VENV/.hirl_mm_stamp"
HASH=$({ cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$0"; probe_gpu; probe_nvcc; env | { grep '^HIRL_MM_' || true; } | sort; } \
  | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  log "environment up to date: $VENV"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -r "$ROOT/requirements/build.txt"
plan "$VENV/bin/python"
log "GPU $GPU, torch $TORCH_VERSION (CUDA $TORCH_CUDA), nvcc $NVCC_VERSION: mmcv $OPS ops, $FAISS"

# mmcv 2.1.0 (the newest mmdet/mmseg accept) has no wheel for this torch:
# build it once from the sdist and cache the wheel outside the repository,
# under a key of everything its compiled ops depend on.
build_mmcv() {
  log "building mmcv $MMCV_VERSION with $OPS ops (about 16 minutes on 2 cores, longer with CUDA)"
  local build src envs
  build=$(mktemp -d)
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$build" mmcv==$MMCV_VERSION
  tar -xzf "$build"/mmcv-$MMCV_VERSION.tar.gz -C "$build"
  src="$build/mmcv-$MMCV_VERSION"
  # torch >= 2.6 headers need C++20; numpy >= 1.24 removed np.float.
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  grep -rlE 'np\.float\b' "$src/mmcv" | xargs -r sed -i -E 's/np\.float\b/np.float64/g'
  envs=(MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}")
  # mmcv compiles CUDA ops whenever torch sees a GPU: hide it for CPU ops.
  if [ "$OPS" = cuda ]; then
    envs+=(FORCE_CUDA=1 CUDA_HOME="${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}")
    [ "$ARCHS" = none ] || envs+=(TORCH_CUDA_ARCH_LIST="$ARCHS")
  else envs+=(FORCE_CUDA=0 CUDA_VISIBLE_DEVICES=); fi
  (cd "$src" && env "${envs[@]}" \
    "$VENV/bin/python" -m pip wheel -q --no-build-isolation --no-deps -w "$build/dist" .)
  # Debug symbols make the wheel ~80 MB; stripped it is ~2 MB.
  (cd "$build/dist" && "$VENV/bin/python" -m wheel unpack -d unpacked mmcv-*.whl \
    && find unpacked -name '_ext*.so' -exec strip --strip-debug {} + \
    && rm mmcv-*.whl && "$VENV/bin/python" -m wheel pack -d . unpacked/mmcv-*)
  mkdir -p "$WHEELS/$KEY"
  cp "$build"/dist/mmcv-*.whl "$WHEELS/$KEY/"
  rm -rf "$build"
}
install_mmcv() {  # installs the cached wheel of $KEY, if any
  local wheel
  wheel=$(ls "$WHEELS/$KEY"/mmcv-*.whl 2>/dev/null | head -n1 || true)
  [ -n "$wheel" ] || return 1
  log "using $wheel"
  "${PIP[@]}" install --no-deps --force-reinstall "$wheel"
}
mmcv_ops_error() {  # empty when mmcv's compiled ops load (after mmcv's deps)
  local out
  out=$("$VENV/bin/python" -c 'import mmcv.ops' 2>&1) && return
  echo "${out##*$'\n'}"
}
if [ ! -d "$WHEELS/$KEY" ] && [ "$OPS" = cpu ] && LEGACY=$(legacy_cpu_wheel "$VENV/bin/python" 2>/dev/null) \
    && [ -n "$LEGACY" ]; then
  # copied, not moved: a set-up script from before the keys still finds it
  log "copying the unkeyed cached wheel $LEGACY to $WHEELS/$KEY/"
  mkdir -p "$WHEELS/$KEY" && cp "$LEGACY" "$WHEELS/$KEY/"
fi
BUILT=0
install_mmcv || { build_mmcv; BUILT=1; install_mmcv; }

# faiss-cpu and faiss-gpu* install the same 'faiss' package: keep one.
OTHER_FAISS=()
for pkg in faiss-cpu faiss-gpu faiss-gpu-cu11 faiss-gpu-cu12; do
  [ "$pkg" = "${FAISS%%[<>=!~;[ ]*}" ] || OTHER_FAISS+=("$pkg")
done
"${PIP[@]}" uninstall -y -q "${OTHER_FAISS[@]}" 2>/dev/null || true
"${PIP[@]}" install -c "$ROOT/requirements/build.txt" -c "$ROOT/requirements/constraints.txt" "$FAISS" \
  -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/runtime.txt" \
  -r "$ROOT/requirements/optional.txt" -r "$ROOT/requirements/tests.txt"

# A cached wheel whose ops do not load (built against another torch ABI) is
# rebuilt once; a fresh build that does not load is an error.
ERR=$(mmcv_ops_error)
if [ -n "$ERR" ] && [ "$BUILT" = 0 ]; then
  log "the cached wheel's ops do not load ($ERR): rebuilding"
  rm -rf "${WHEELS:?}/$KEY"
  build_mmcv
  install_mmcv
  ERR=$(mmcv_ops_error)
fi
[ -z "$ERR" ] || { log "error: mmcv's compiled ops do not load: $ERR"; exit 1; }
"${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
echo "$HASH" > "$STAMP"
log "ready: source $VENV/bin/activate"
