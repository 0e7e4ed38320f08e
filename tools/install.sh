#!/usr/bin/env bash
# One idempotent install of mambaout_dense and the OpenMMLab stack into <repo>/.venv.
#
#   bash tools/install.sh            # create/update .venv, build mmcv 2.1.0 with ops, install all
#
# A second run skips everything already installed (about a minute). Environment knobs:
#   PYTHON=python3.11      interpreter used to create the venv
#   MMCV_WHEEL_CACHE=DIR   where the compiled mmcv wheel is kept (default ~/.cache/mambaout_dense)
#   FORCE_CUDA=0|1         compile mmcv's CUDA ops (default: 1 when nvcc and a GPU are present)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
PYTHON="${PYTHON:-python3}"
CACHE="${MMCV_WHEEL_CACHE:-$HOME/.cache/mambaout_dense}"

# Versions: keep in sync with setup.py.
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMENGINE_VERSION=0.10.7
MMCV_VERSION=2.1.0
MMDET_VERSION=3.3.0
MMSEG_VERSION=1.2.2
TIMM_VERSION=1.0.31
PYCOCOTOOLS_VERSION=2.0.11

STEP="start"
trap 'echo "[install] FAILED at step: $STEP (see the output above)" >&2' ERR

step() { STEP="$1"; echo "[install] ==> $1"; }
pip_q() { "$PY" -m pip install --disable-pip-version-check "$@"; }
have() {  # have DIST VERSION -> 0 when DIST==VERSION is installed in the venv
    "$PY" - "$1" "$2" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version(sys.argv[1]).split('+')[0] == sys.argv[2] else 1)
PYEOF
}

step "virtual environment at $VENV"
if [ ! -x "$PY" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 9), sys.version' \
    || { echo "[install] Python >= 3.9 required" >&2; exit 1; }

step "torch $TORCH_VERSION + torchvision $TORCHVISION_VERSION"
if have torch "$TORCH_VERSION" && have torchvision "$TORCHVISION_VERSION"; then
    echo "[install]     already installed"
else
    pip_q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

step "build tools + mmengine $MMENGINE_VERSION"
if have mmengine "$MMENGINE_VERSION" && "$PY" -c 'import ninja, wheel, pkg_resources' 2>/dev/null; then
    echo "[install]     already installed"
else
    pip_q "mmengine==$MMENGINE_VERSION" "setuptools<81" wheel ninja
fi

step "mmcv $MMCV_VERSION with compiled ops"
if have mmcv "$MMCV_VERSION" && "$PY" -c 'import mmcv.ops' 2>/dev/null; then
    echo "[install]     already installed (mmcv.ops imports)"
else
    if [ -z "${FORCE_CUDA:-}" ]; then
        if command -v nvcc >/dev/null 2>&1 && command -v nvidia-smi >/dev/null 2>&1 \
                && nvidia-smi -L >/dev/null 2>&1; then
            FORCE_CUDA=1
        else
            FORCE_CUDA=0
        fi
    fi
    TAG="torch${TORCH_VERSION}-cuda${FORCE_CUDA}"
    WHEEL_DIR="$CACHE/mmcv-$MMCV_VERSION-$TAG"
    mkdir -p "$WHEEL_DIR"
    if ! ls "$WHEEL_DIR"/mmcv-*.whl >/dev/null 2>&1; then
        echo "[install]     no cached wheel in $WHEEL_DIR: compiling from the sdist (about 7 minutes on 2 cores)"
        SRC="$(mktemp -d)"
        "$PY" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
            "mmcv==$MMCV_VERSION" -d "$SRC"
        tar -xzf "$SRC"/mmcv-"$MMCV_VERSION".tar.gz -C "$SRC"
        # torch >= 2.10 headers require C++20; mmcv 2.1.0 hard-codes -std=c++17.
        sed -i 's/-std=c++17/-std=c++20/g' "$SRC/mmcv-$MMCV_VERSION/setup.py"
        # CFLAGS replaces Python's defaults, so spell out the optimisation flags; -g0 keeps
        # the build short and the wheel small.
        MMCV_WITH_OPS=1 FORCE_CUDA="$FORCE_CUDA" MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            CFLAGS="-DNDEBUG -g0 -fwrapv -O3 -Wall" CXXFLAGS="-g0" \
            "$PY" -m pip wheel --disable-pip-version-check --no-build-isolation --no-deps \
            "$SRC/mmcv-$MMCV_VERSION" -w "$WHEEL_DIR"
        rm -rf "$SRC"
    else
        echo "[install]     using cached wheel from $WHEEL_DIR"
    fi
    pip_q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-*.whl
    # mmcv's runtime dependencies (addict, yapf, opencv-python, ...), resolved normally.
    pip_q addict packaging Pillow pyyaml yapf opencv-python
    "$PY" -c 'import mmcv.ops; mmcv.ops.nms' || { echo "[install] mmcv.ops does not import" >&2; exit 1; }
fi

step "mmdet $MMDET_VERSION, mmsegmentation $MMSEG_VERSION, timm, pycocotools, test tools"
if have mmdet "$MMDET_VERSION" && have mmsegmentation "$MMSEG_VERSION" && have timm "$TIMM_VERSION" \
        && have pycocotools "$PYCOCOTOOLS_VERSION" && "$PY" -c 'import pytest, ftfy, regex, ruff' 2>/dev/null; then
    echo "[install]     already installed"
else
    pip_q "mmdet==$MMDET_VERSION" "mmsegmentation==$MMSEG_VERSION" "timm==$TIMM_VERSION" \
        "pycocotools==$PYCOCOTOOLS_VERSION" ftfy regex pytest ruff matplotlib scipy tqdm
fi

step "mambaout_dense (editable)"
# Checked from / so that the repo folder itself is not on sys.path.
if (cd / && "$PY" -c 'import mambaout_dense, sys; sys.exit(0 if mambaout_dense.__file__.startswith(sys.argv[1]) else 1)' "$ROOT") 2>/dev/null; then
    echo "[install]     already installed"
else
    pip_q --no-deps --no-build-isolation -e "$ROOT"
fi

step "optional compiled CPU selective-scan kernel"
if [ -f "$ROOT/mambaout_dense/ops/csrc/build.py" ]; then
    "$PY" -m mambaout_dense.ops.csrc.build || echo "[install]     CPU kernel not built; the pure-PyTorch scan will be used"
else
    echo "[install]     not part of this checkout"
fi

step "check the stack"
cd /
"$PY" - <<'PYEOF'
import torch, torchvision, mmengine, mmcv, mmcv.ops, mmdet, mmseg, timm, pycocotools  # noqa
import mambaout_dense
print(f"[install]     torch {torch.__version__} (cuda available: {torch.cuda.is_available()}), "
      f"mmengine {mmengine.__version__}, mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, "
      f"mmseg {mmseg.__version__}, timm {timm.__version__}, mambaout_dense {mambaout_dense.__version__}")
PYEOF
STEP="done"
echo "[install] done. Activate with: source $VENV/bin/activate"
