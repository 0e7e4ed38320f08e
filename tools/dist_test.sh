#!/usr/bin/env bash
# Multi-process testing with torchrun: tools/dist_test.sh CONFIG CHECKPOINT GPUS [test.py args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA, processes use gloo on CPU.
set -euo pipefail
TOOLS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec bash "$TOOLS/torchrun.sh" "$3" "$TOOLS/test.py" "$1" "$2" --launcher pytorch "${@:4}"
