#!/usr/bin/env bash
# Download the pure-Python wheels that benchmarks/gpu_suite.py needs on a lent GPU machine.
# Run it once, here (with network), before the device call that carries DEST:
#
#   bash benchmarks/gpu_wheelhouse.sh [DEST]   # default DEST: work_dirs/gpu_wheelhouse
#   bash benchmarks/gpu_wheelhouse.sh --list   # the pinned wheels, one NAME==VERSION a line
#
# It ends by listing the wheel files, one a line, after checking there is one per pin.
#
# The lent machine (Python 3.12, torch, triton, timm, numpy, pyyaml, rich, matplotlib,
# opencv-python-headless, packaging; no network, no OpenMMLab package) lacks only mmengine and
# the small packages mmengine imports at module level; `mambaout_dense.models` / `.ops` /
# `.analysis` need nothing else (see docs/gpu_suite.md). tests/benchmarks/test_gpu_suite.py
# checks this list against what the suite imports (`python benchmarks/gpu_suite.py
# --check-imports`) less what the machine's image holds, and the suite's preflight checks each
# pin is installed (`--wheelhouse`).
#
# Versions are pinned to those of tools/install.sh (mmengine) and of the .venv it builds; the
# wheels are py3-none-any, so the --platform/--python-version flags only keep pip from choosing
# anything else. DEST is ignored by git (work_dirs/) and travels with `carry`.
set -euo pipefail

WHEELS=(
    mmengine==0.10.7     # mmengine.model.BaseModule, mmengine.logging, mmengine.registry
    addict==2.4.0        # mmengine.config
    termcolor==3.3.0     # mmengine.logging
    yapf==0.43.0         # mmengine.config (pretty-printing configs)
    platformdirs==4.14.9 # yapf
)

if [[ "${1:-}" == "--list" ]]; then
    printf '%s\n' "${WHEELS[@]}"
    exit 0
fi

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$ROOT/work_dirs/gpu_wheelhouse}"
PYTHON="${PYTHON:-python3}"

mkdir -p "$DEST"
rm -f "$DEST"/*.whl
"$PYTHON" -m pip download --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
    -d "$DEST" "${WHEELS[@]}" >&2
for pin in "${WHEELS[@]}"; do
    name="${pin%%==*}"
    version="${pin##*==}"
    if ! compgen -G "$DEST/${name//-/_}-$version-*.whl" >/dev/null; then
        echo "gpu_wheelhouse.sh: no wheel for $pin in $DEST" >&2
        exit 1
    fi
done
du -sh "$DEST" >&2
ls -1 "$DEST"/*.whl
