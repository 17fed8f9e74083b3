# shellcheck shell=bash
# Sourced by the shell tools (after they set ROOT, the repository root): sets
# PYTHON to the project's Python, found without an activated venv:
# $HIRL_MM_PYTHON, else $PYTHON, else the venv of tools/setup_env.sh
# ($HIRL_MM_VENV, default <repo>/.venv), else python3 on PATH. torchrun is
# then "$PYTHON" -m torch.distributed.run, which needs nothing on PATH.
if [ -n "${HIRL_MM_PYTHON:-}" ]; then
  PYTHON=$HIRL_MM_PYTHON
elif [ -z "${PYTHON:-}" ]; then
  PYTHON=${HIRL_MM_VENV:-$ROOT/.venv}/bin/python
  [ -x "$PYTHON" ] || PYTHON=$(command -v python3 || echo python3)
fi
