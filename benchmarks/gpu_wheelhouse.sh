#!/usr/bin/env bash
# Download the pure-Python wheels that benchmarks/gpu_suite.py needs on a lent GPU machine.
#
#   bash benchmarks/gpu_wheelhouse.sh [DEST]      # default DEST: work_dirs/gpu_wheelhouse
#
# The lent machine (Python 3.12, torch, triton, timm, numpy, pyyaml, rich, matplotlib,
# opencv-python-headless, packaging; no network, no OpenMMLab package) lacks only mmengine and
# the small packages mmengine imports at module level; `mambaout_dense.models` / `.ops` /
# `.analysis` need nothing else (see docs/gpu_suite.md). The list below was found by importing
# those modules in a virtual environment that saw only torch, triton, timm and their
# dependencies plus these wheels (`python benchmarks/gpu_suite.py --check-imports`).
#
# Versions are pinned to those of tools/install.sh (mmengine) and of the .venv it builds; the
# wheels are py3-none-any, so the --platform/--python-version flags only keep pip from choosing
# anything else. DEST is ignored by git (work_dirs/) and travels with `carry`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/work_dirs/gpu_wheelhouse}"
PYTHON="${PYTHON:-python3}"

WHEELS=(
    mmengine==0.10.7     # mmengine.model.BaseModule, mmengine.logging, mmengine.registry
    addict==2.4.0        # mmengine.config
    termcolor==3.3.0     # mmengine.logging
    yapf==0.43.0         # mmengine.config (pretty-printing configs)
    platformdirs==4.14.9 # yapf
)

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
"$PYTHON" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "${WHEELS[@]}"
ls -l "$DEST"
du -sh "$DEST"
