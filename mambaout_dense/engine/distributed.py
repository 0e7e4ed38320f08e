"""Distributed set-up of a training or evaluation run, on machines with or without CUDA.

mmengine's ``launcher='pytorch'`` path calls ``torch.cuda.set_device``, which fails without CUDA;
:func:`setup_distributed` starts a gloo process group itself in that case (the Runner then skips
its own set-up) with a bounded collective timeout, so a run whose peer died does not hang
forever. :func:`describe_lost_peer` explains the error a surviving rank then sees, and
:func:`replace_sync_bn` turns SyncBN into BN for single-process runs.
"""
import os
from datetime import timedelta
from typing import Any, Optional

import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging import print_log

from ..errors import UsageError

__all__ = ['setup_distributed', 'describe_lost_peer', 'replace_sync_bn', 'TIMEOUT_ENV_VAR']

#: Environment variable that overrides the collective timeout (seconds).
TIMEOUT_ENV_VAR = 'MAMBAOUT_DENSE_DIST_TIMEOUT'


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` for ``launcher`` and, without CUDA, start a gloo process group.

    DDP then needs ``device_ids=None``. The collective timeout is ``env_cfg.dist_cfg.timeout``
    seconds (``MAMBAOUT_DENSE_DIST_TIMEOUT`` overrides).

    Args:
        cfg (Config): The run's config (modified in place).
        launcher (str): ``'none'``, ``'pytorch'`` (torchrun) or ``'slurm'``.

    Raises:
        UsageError: ``pytorch`` outside torchrun, or ``slurm`` outside a SLURM job.
    """
    cfg.launcher = launcher
    if launcher == 'none':
        return
    if launcher == 'pytorch' and 'RANK' not in os.environ:
        raise UsageError('--launcher pytorch needs the environment torchrun sets (RANK, '
                         'WORLD_SIZE, ...): start with tools/dist_train.sh CONFIG NPROC')
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict())
    timeout = int(os.environ.get(TIMEOUT_ENV_VAR, dist_cfg.get('timeout', 1800)))
    dist_cfg['timeout'] = timeout
    if launcher == 'slurm':
        _slurm_env_to_torchrun()
    if torch.cuda.is_available():
        return  # mmengine's own NCCL set-up works
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', timeout=timedelta(seconds=timeout))
    dist_cfg['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg', None) or ConfigDict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    wrapper.setdefault('broadcast_buffers', False)
    cfg.model_wrapper_cfg = wrapper


_PEER_LOST = ('gloo', 'NCCL', 'Connection reset', 'Connection closed', 'Timed out', 'timed out',
              'Broken pipe', 'DistBackendError', 'DistNetworkError')


def describe_lost_peer(err: BaseException) -> Optional[str]:
    """A one-paragraph explanation when ``err`` is a collective that failed because another rank
    died or hung; None for any other error (or outside a multi-process run).

    torchrun's agent then stops the remaining ranks and prints which rank failed first.
    """
    import torch.distributed as dist
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    text = f'{type(err).__name__}: {err}'
    if not any(marker in text for marker in _PEER_LOST):
        return None
    first = next((line for line in str(err).splitlines() if line.strip()), '')[:300]
    timeout = os.environ.get(TIMEOUT_ENV_VAR, 'env_cfg.dist_cfg.timeout')
    return (f'rank {dist.get_rank()} of {dist.get_world_size()}: a collective operation failed '
            f'because another rank died or stopped responding ({type(err).__name__}: {first}). '
            f'The run stops here; a rank that hangs is given up on after the collective timeout '
            f'({timeout} s, {TIMEOUT_ENV_VAR}). Resume with --resume once the cause '
            "is fixed (see the failing rank's output above).")


def _slurm_env_to_torchrun() -> None:
    """Export torchrun-style variables from SLURM's (as mmengine's slurm launcher does)."""
    if 'SLURM_PROCID' not in os.environ:
        raise UsageError('--launcher slurm used outside a SLURM job (no SLURM_PROCID)')
    os.environ.setdefault('RANK', os.environ['SLURM_PROCID'])
    os.environ.setdefault('WORLD_SIZE', os.environ['SLURM_NTASKS'])
    os.environ.setdefault('LOCAL_RANK', os.environ.get('SLURM_LOCALID', '0'))
    os.environ.setdefault('MASTER_PORT', os.environ.get('PORT', '29500'))
    if 'MASTER_ADDR' not in os.environ:
        import subprocess
        nodes = os.environ['SLURM_NODELIST']
        addr = subprocess.getoutput(f'scontrol show hostname {nodes} | head -n1')
        os.environ['MASTER_ADDR'] = addr


def replace_sync_bn(cfg: Config) -> int:
    """Use BN where the config asks for SyncBN (one process has no group to sync with).

    mmseg's base models use SyncBN, which cannot train in a single process. Multi-process
    runs keep SyncBN.

    Returns:
        int: How many norm configs were changed.
    """
    changed = 0

    def visit(node: Any) -> None:
        nonlocal changed
        if isinstance(node, dict):
            if node.get('type') == 'SyncBN':
                node['type'] = 'BN'
                changed += 1
            for value in node.values():
                visit(value)
        elif isinstance(node, (list, tuple)):
            for value in node:
                visit(value)

    visit(cfg.model)
    if changed:
        print_log(f'single process: {changed} SyncBN norm config(s) replaced by BN',
                  logger='current')
    return changed
