#!/usr/bin/env bash
# Make the wheel folder that tools/dev/gpu_check.sh installs on a bare GPU image
# (Python 3.12, torch, numpy 2, no OpenMMLab packages, no network).
#
#   bash tools/dev/make_gpu_wheels.sh [DIR]      # default: <repo>/.whl
#
# DIR gets the pure wheels the image lacks (mmengine, mmpretrain, mmcv 2.1.0
# built without ops, their small dependencies, faiss-cpu) and fmnist/ with
# the four Fashion-MNIST idx files. What is patched in the wheels, and why:
#   mmcv 2.1.0   np.float -> np.float64 (numpy >= 1.24), as setup_env.sh;
#                named "mmcv" (not "mmcv-lite") so that `pip show mmcv` and
#                mmengine's is_installed('mmcv') find it.
#   mmengine     utils/package_utils.py reads installed packages through
#                importlib.metadata, not pkg_resources (deprecated, warns
#                from setuptools 81 on, announced for removal), which the
#                `mmpretrain::` config bases go through.
#   mmpretrain   stdlib importlib.metadata instead of the importlib_metadata
#                back-port, which the GPU image lacks (mmpretrain's import
#                fails without it); np.in1d (gone in numpy 2.4) -> np.isin.
# Environment: PYTHON, a Python with pip, wheel and setuptools (default: the
# project's .venv); FMNIST, the idx files' folder.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DIR=$(mkdir -p "${1:-$ROOT/.whl}" && cd "${1:-$ROOT/.whl}" && pwd)
PY=${PYTHON:-$ROOT/.venv/bin/python}
FMNIST=${FMNIST:-/usr/share/datasets/fashion-mnist}
PURE=(mmengine==0.10.7 mmpretrain==1.2.0 addict==2.4.0 yapf==0.43.0
  termcolor==3.3.0 mat4py==0.6.0 model-index==0.1.11 ordered-set==4.1.0
  platformdirs==4.14.9 faiss-cpu==1.15.1)
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)

log() { echo "[make_gpu_wheels] $*" >&2; }

# The default folder must never be committed.
EXCLUDE="$ROOT/.git/info/exclude"
if [ "$DIR" = "$ROOT/.whl" ] && [ -d "$ROOT/.git" ] \
    && ! grep -qxF '/.whl/' "$EXCLUDE" 2>/dev/null; then
  mkdir -p "$ROOT/.git/info" && echo '/.whl/' >> "$EXCLUDE"
fi

rm -f "$DIR"/*.whl
BUILD=$(mktemp -d)
trap 'rm -rf "$BUILD"' EXIT
log "downloading ${PURE[*]}"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp "${PLATFORMS[@]}" -d "$BUILD/dl" "${PURE[@]}"

log "building mmcv 2.1.0 without ops"
"$PY" -m pip download -q --no-deps --no-binary :all: --no-build-isolation \
  -d "$BUILD" mmcv==2.1.0
tar -xzf "$BUILD/mmcv-2.1.0.tar.gz" -C "$BUILD"
SRC="$BUILD/mmcv-2.1.0"
sed -i "s/name='mmcv' if os.getenv('MMCV_WITH_OPS', '1') == '1' else 'mmcv-lite'/name='mmcv'/" \
  "$SRC/setup.py"
grep -q "^    name='mmcv',$" "$SRC/setup.py"
grep -rlE 'np\.float\b' "$SRC/mmcv" | xargs -r sed -i -E 's/np\.float\b/np.float64/g'
(cd "$SRC" && MMCV_WITH_OPS=0 "$PY" -m pip wheel -q --no-build-isolation \
  --no-deps -w "$BUILD/dl" .)

log "patching mmengine (pkg_resources) and mmpretrain (importlib_metadata, numpy 2.4)"
"$PY" - "$BUILD/dl" <<'EOF'
import glob
import os.path as osp
import subprocess
import sys

PACKAGE_UTILS = '''def is_installed(package: str) -> bool:
    """Check package whether installed (importlib.metadata: hirl_mm's GPU
    wheel, no pkg_resources).

    Args:
        package (str): Name of package to be checked.
    """
    import importlib.metadata
    import importlib.util
    try:
        importlib.metadata.distribution(package)
        return True
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        return spec is not None and spec.origin is not None


def get_installed_path(package: str) -> str:
    """Get installed path of package (importlib.metadata).

    Args:
        package (str): Name of package.
    """
    import importlib.metadata
    import importlib.util
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        spec = importlib.util.find_spec(package)
        if spec is None:
            raise
        if spec.origin is None:
            raise RuntimeError(
                f'{package} is a namespace package, which is invalid '
                'for `get_install_path`')
        return osp.dirname(spec.origin)
    location = str(dist.locate_file(''))
    possible_path = osp.join(location, package)
    if osp.exists(possible_path):
        return possible_path
    return osp.join(location, package2module(package))


def package2module(package: str):
    """Infer module name from package (importlib.metadata).

    Args:
        package (str): Package to infer module name.
    """
    import importlib.metadata
    top_level = importlib.metadata.distribution(package).read_text(
        'top_level.txt')
    if top_level:
        return top_level.split('\\n')[0]
    raise ValueError(f'can not infer the module name of {package}')


def call_command('''


def replace(path, old, new, count=None):
    with open(path) as f:
        text = f.read()
    found = text.count(old)
    if not found or (count is not None and found != count):
        sys.exit(f'patch target {old!r} found {found} times in {path}')
    with open(path, 'w') as f:
        f.write(text.replace(old, new))


def repack(pattern, patches):
    (wheel, ) = glob.glob(osp.join(dl, pattern))
    work = osp.join(dl, 'unpacked')
    subprocess.check_call(
        [sys.executable, '-m', 'wheel', 'unpack', '-d', work, wheel])
    (root, ) = glob.glob(osp.join(work, '*'))
    for rel, old, new in patches:
        if old is None:  # replace a whole region: new = (start, end, text)
            with open(osp.join(root, rel)) as f:
                text = f.read()
            start, end = text.index(new[0]), text.index(new[1])
            old, new = text[start:end + len(new[1])], new[2]
        replace(osp.join(root, rel), old, new)
    subprocess.check_call(
        [sys.executable, '-m', 'wheel', 'pack', '-d', dl, root])
    subprocess.check_call(['rm', '-rf', work])


dl = sys.argv[1]
repack('mmengine-*.whl', [
    ('mmengine/utils/package_utils.py', None,
     ('def is_installed(', 'def call_command(', PACKAGE_UTILS)),
])
repack('mmpretrain-*.whl', [
    ('mmpretrain/utils/dependency.py', 'from importlib_metadata import',
     'from importlib.metadata import'),
    ('mmpretrain/apis/model.py', 'from importlib_metadata import',
     'from importlib.metadata import'),
    ('mmpretrain/evaluation/metrics/retrieval.py', 'np.in1d(', 'np.isin('),
])
EOF
cp "$BUILD"/dl/*.whl "$DIR/"
mkdir -p "$DIR/fmnist"
cp "$FMNIST"/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz "$DIR/fmnist/"
ls -l "$DIR" >&2
log "$(du -sh "$DIR" | cut -f1) in $DIR"
