#!/usr/bin/env bash
# The main job on a fresh machine, on the embedded synthetic data:
#   bash tools/quickstart.sh        # detection: Mask R-CNN MambaOut-Femto -> COCO bbox/segm AP
#   bash tools/quickstart.sh seg    # segmentation: UperNet MambaOut-Femto -> mIoU
# Installs everything (tools/install.sh), generates the data set, trains on the CPU (or GPU),
# saves checkpoints in work_dirs/<config>/, then evaluates the last one with tools/test.py and
# draws its predictions on the first validation images (work_dirs/<config>/predictions/).
set -euo pipefail
TASK=${1:-det}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash tools/install.sh
PY=.venv/bin/python
case "$TASK" in
    det)
        CONFIG=configs/mask_rcnn_mambaout_femto_synthetic.py
        DATA=data/synthetic_coco
        GEN=(coco --out "$DATA" --train 2000 --val 200 --size 320 --seed 0)
        ;;
    seg)
        CONFIG=configs/upernet_mambaout_femto_synthetic.py
        DATA=data/synthetic_ade
        GEN=(ade --out "$DATA" --train 1000 --val 100 --size 256 --seed 0)
        ;;
    *)
        echo "usage: bash tools/quickstart.sh [det|seg]" >&2
        exit 2
        ;;
esac
NAME=$(basename "$CONFIG" .py)
if [ ! -f "$DATA/.complete" ]; then
    echo "[quickstart] generating $DATA"
    $PY tools/make_synthetic.py "${GEN[@]}"
    touch "$DATA/.complete"
fi
echo "[quickstart] training $CONFIG"
$PY tools/train.py "$CONFIG" --work-dir "work_dirs/$NAME"
CKPT=$(cat "work_dirs/$NAME/last_checkpoint")
echo "[quickstart] testing $CKPT"
$PY tools/test.py "$CONFIG" "$CKPT" --work-dir "work_dirs/$NAME/test" \
    --show-dir "work_dirs/$NAME/predictions" --show-num 8
