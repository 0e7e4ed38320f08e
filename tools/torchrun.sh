#!/usr/bin/env bash
# Shared launcher of dist_train.sh / dist_test.sh: tools/torchrun.sh NPROC SCRIPT [args]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR, PORT. Without CUDA, processes use gloo on CPU.
# PYTHON overrides the interpreter (default: the repository's .venv, else python on PATH).
set -euo pipefail
NPROC=$1
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python )}
exec "$PYTHON" -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$NPROC" --master_port="$PORT" "${@:2}"
