#!/usr/bin/env bash
# Set up the project's virtual environment (idempotent).
#
#   bash tools/setup_env.sh            # creates ./.venv
#
# Environment:
#   HIRL_MM_VENV         where the venv lives. Defaults to <repo>/.venv.
#   HIRL_MM_WHEEL_CACHE  where the built mmcv wheel is cached.
#                        Defaults to ~/.cache/hirl_mm/wheels.
#   HIRL_MM_SKIP_APT=1   do not apt-get the Fashion-MNIST package.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
VENV=${HIRL_MM_VENV:-$ROOT/.venv}
WHEELS=${HIRL_MM_WHEEL_CACHE:-$HOME/.cache/hirl_mm/wheels}
MMCV_VERSION=2.1.0
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

log() { echo "[setup_env] $*" >&2; }

# Embedded default data: Debian ships the full Fashion-MNIST.
if [ -z "${HIRL_MM_SKIP_APT:-}" ] && [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] \
    && command -v apt-get >/dev/null; then
  log "installing dataset-fashion-mnist with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null; } \
    || log "warning: dataset-fashion-mnist not installed; give HierarchicalFashionMNIST a source_root"
fi

# Skip everything when the requirements have not changed since the last run.
STAMP="$VENV/.hirl_mm_stamp"
HASH=$(cat "$ROOT"/requirements/*.txt "$ROOT/setup.py" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$HASH" ]; then
  log "environment up to date: $VENV"
  exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -r "$ROOT/requirements/build.txt"

# mmcv 2.1.0 (the newest mmdet/mmseg accept) has no wheel for this torch:
# build it once from the sdist and cache the wheel outside the repository.
mkdir -p "$WHEELS"
WHEEL=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$WHEEL" ]; then
  log "building mmcv $MMCV_VERSION with ops (about 16 minutes on 2 cores)"
  BUILD=$(mktemp -d)
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" mmcv==$MMCV_VERSION
  tar -xzf "$BUILD"/mmcv-$MMCV_VERSION.tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_VERSION"
  # torch >= 2.6 headers need C++20; numpy >= 1.24 removed np.float.
  sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
  grep -rlE 'np\.float\b' "$SRC/mmcv" | xargs -r sed -i -E 's/np\.float\b/np.float64/g'
  (cd "$SRC" && MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    "$VENV/bin/python" -m pip wheel -q --no-build-isolation --no-deps -w "$BUILD/dist" .)
  # Debug symbols make the wheel ~80 MB; stripped it is ~2 MB.
  (cd "$BUILD/dist" && "$VENV/bin/python" -m wheel unpack -d unpacked mmcv-*.whl \
    && find unpacked -name '_ext*.so' -exec strip --strip-debug {} + \
    && rm mmcv-*.whl && "$VENV/bin/python" -m wheel pack -d . unpacked/mmcv-*)
  cp "$BUILD"/dist/mmcv-*.whl "$WHEELS/"
  rm -rf "$BUILD"
  WHEEL=$(ls "$WHEELS"/mmcv-$MMCV_VERSION-*.whl | head -n1)
fi
log "using $WHEEL"
"${PIP[@]}" install --no-deps "$WHEEL"

"${PIP[@]}" install -c "$ROOT/requirements/build.txt" \
  -r "$ROOT/requirements/mminstall.txt" -r "$ROOT/requirements/runtime.txt" \
  -r "$ROOT/requirements/optional.txt" -r "$ROOT/requirements/tests.txt"
"${PIP[@]}" install --no-deps --no-build-isolation -e "$ROOT"
echo "$HASH" > "$STAMP"
log "ready: source $VENV/bin/activate"
