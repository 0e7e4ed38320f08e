#!/usr/bin/env bash
# Multi-process training with torchrun: tools/dist_train.sh CONFIG GPUS [train.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA, processes use gloo on CPU.
set -euo pipefail
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$TOOLS/torchrun.sh" "$2" "$TOOLS/train.py" "$1" --launcher pytorch "${@:3}"
