#!/usr/bin/env bash
# dexgrasp: set up a fresh machine (idempotent) and run the headless demo or the tests.
#
#   ./run.sh demo [dexgrasp demo args]     # set-up + headless simulated demo
#   ./run.sh test [pytest args]            # set-up + the test suite
#
# Set-up: Debian packages for off-screen rendering and the interface build (apt-get when root or
# passwordless sudo, else it prints the command), a venv (.venv, or $DEXGRASP_VENV) with
# torch (CPU build), MuJoCo, the pinned ROS 2 Kilted wheels and dexgrasp itself (editable), the
# dex_interfaces build into that venv, and the robot models (checksummed, $DEXGRASP_MODEL_DIR or
# ~/.cache/dexgrasp/models). Each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV=${DEXGRASP_VENV:-$ROOT/.venv}
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${DEXGRASP_TORCH:-torch==2.13.0}

say() { printf '[run.sh %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
usage() { sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }

[ $# -ge 1 ] || usage
MODE=$1
shift
case "$MODE" in demo|test|setup) ;; *) usage ;; esac

# --- 1. system packages ------------------------------------------------------------------------
APT_PKGS="libegl1 libegl-mesa0 libgl1-mesa-dri libopengl0 libosmesa6 libusb-1.0-0 cmake g++ python3-dev python3-venv git"
if command -v dpkg-query >/dev/null 2>&1; then
  missing=""
  for p in $APT_PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo"; else
      say "missing Debian packages:$missing"
      say "install them with: sudo apt-get install -y$missing"
      exit 1
    fi
    say "installing Debian packages:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
else
  say "not a Debian-like system: make sure EGL/OSMesa, cmake, a C++ compiler and Python headers are installed"
fi

# --- 2. venv + pip packages ---------------------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  pyver=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$pyver" = "3.11" ] || say "warning: the ROS 2 Kilted wheels are built for Python 3.11; $PYTHON is $pyver"
  say "creating venv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
STAMP="$VENV/.dexgrasp-pip.stamp"
want=$(cat pyproject.toml requirements/ros-wheels-constraints.txt | sha256sum | cut -c1-16)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  t0=$(date +%s)
  say "installing Python packages into $VENV (torch CPU build, MuJoCo, ROS 2 wheels, dexgrasp)"
  "$PY" -m pip install -q --disable-pip-version-check -U pip
  "$PY" -c "import torch" 2>/dev/null || "$PY" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
  "$PY" -m pip install -q --disable-pip-version-check -c requirements/ros-wheels-constraints.txt -e ".[ros-wheels,dev]"
  echo "$want" > "$STAMP"
  say "Python packages ready ($(( $(date +%s) - t0 )) s)"
fi

# --- 3. dex_interfaces into the venv, 4. robot models -------------------------------------------
"$PY" src/dex_interfaces/build_in_venv.py
"$VENV/bin/dexgrasp-description" fetch-models

# --- 5. run -------------------------------------------------------------------------------------
export MUJOCO_GL=${MUJOCO_GL:-egl}
case "$MODE" in
  setup) say "set-up complete" ;;
  demo) exec "$VENV/bin/dexgrasp" demo "$@" ;;
  test) exec "$PY" -m pytest -n 2 "$@" ;;
esac
