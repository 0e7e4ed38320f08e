"""Command-line glue of ``tools/*.py`` (nothing in the library imports this module).

Generic over detection and segmentation: the config's ``default_scope`` (``mmdet`` or ``mmseg``)
picks the task registries (:mod:`mambaout_dense.builder`). Handles what mmengine leaves to the
user: ``--cfg-options`` keys that do not exist or do not parse, distributed runs on machines
without CUDA (gloo, no ``torch.cuda.set_device``) with a bounded collective timeout, data folders
that are missing, the fault-tolerance hooks that every training run gets (divergence guard, exact
resume, checkpoint compatibility, prune-after-save), errors turned into one message and an exit
code without a traceback (:func:`run_main`), and warnings the user cannot act on silenced
(:func:`quiet_known_warnings`).
"""
import argparse
import difflib
import os
import os.path as osp
from datetime import timedelta
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

from ..datasets.paths import check_data_paths
from ..errors import UsageError

__all__ = [
    'CfgOptionsAction', 'apply_cfg_options', 'default_work_dir', 'check_work_dir',
    'setup_distributed', 'ensure_plain_checkpoints', 'ensure_reliability_hooks',
    'reliability_hooks', 'check_data_paths', 'describe_lost_peer', 'replace_sync_bn',
    'quiet_known_warnings', 'run_main'
]

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` whose syntax errors are argparse usage errors (exit 2).

    ``DictAction`` raises ``ValueError`` for ``key`` without ``=`` and ``AssertionError`` for
    unbalanced brackets, which argparse shows as a traceback.
    """

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values:
            key, sep, _ = item.partition('=')
            if not sep or not key:
                raise argparse.ArgumentError(
                    self, f'expected KEY=VALUE, got {item!r} (e.g. train_cfg.max_iters=100)')
        try:
            super().__call__(parser, namespace, values, option_string)
        except (ValueError, AssertionError) as err:
            raise argparse.ArgumentError(self, f'cannot parse {" ".join(values)!r}: {err}')


def _flatten(cfg: Any, prefix: str = '') -> Iterator[str]:
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            name = f'{prefix}{key}'
            yield name
            yield from _flatten(value, name + '.')
    elif isinstance(cfg, (list, tuple)):
        for idx, value in enumerate(cfg):
            name = f'{prefix}{idx}'
            yield name
            yield from _flatten(value, name + '.')


def apply_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """Merge ``--cfg-options`` into ``cfg``, refusing keys that the config does not have.

    A typo would otherwise add a new, unused key silently. Prefix a key with ``+`` to add a
    key on purpose (``+model.backbone.with_cp=True``).

    Args:
        cfg (Config): The config (modified in place).
        options (dict, optional): Parsed by mmengine's ``DictAction``.

    Raises:
        UsageError: A key does not exist; the message lists the closest existing keys.
    """
    if not options:
        return
    existing = set(_flatten(cfg._cfg_dict.to_dict()))
    merged = {}
    for key, value in options.items():
        if key.startswith('+'):
            merged[key[1:]] = value
            continue
        if key not in existing:
            close = difflib.get_close_matches(key, sorted(existing), n=3, cutoff=0.6)
            hint = f' Did you mean: {", ".join(close)}?' if close else ''
            raise UsageError(f'--cfg-options: the config has no key {key!r}.{hint} '
                             f'(Write +{key}=... to add a new key on purpose.)')
        merged[key] = value
    cfg.merge_from_dict(merged)


def default_work_dir(config_path: str) -> str:
    """``work_dirs/<config name>`` under the current directory, as mmdet does."""
    return osp.join('./work_dirs', osp.splitext(osp.basename(config_path))[0])


def check_work_dir(work_dir: str) -> None:
    """Fail early when the work dir cannot be created or written.

    Raises:
        UsageError: It is a file, or it cannot be created or written.
    """
    if osp.exists(work_dir) and not osp.isdir(work_dir):
        raise UsageError(f'--work-dir {work_dir!r} is a file, not a folder')
    try:
        os.makedirs(work_dir, exist_ok=True)
    except OSError as err:
        raise UsageError(f'cannot create the work dir {work_dir!r}: {err.strerror}') from None
    if not os.access(work_dir, os.W_OK | os.X_OK):
        raise UsageError(f'the work dir {work_dir!r} is not writable')


def setup_distributed(cfg: Config, launcher: str) -> None:
    """Prepare ``cfg`` for ``launcher`` and, without CUDA, start a gloo process group.

    mmengine's ``launcher='pytorch'`` path calls ``torch.cuda.set_device``, which fails without
    CUDA. Initialising the group here makes the Runner skip its own set-up; DDP then needs
    ``device_ids=None``. The collective timeout is ``env_cfg.dist_cfg.timeout`` seconds
    (``MAMBAOUT_DENSE_DIST_TIMEOUT`` overrides), so a run whose peer died does not hang forever.
    """
    cfg.launcher = launcher
    if launcher == 'none':
        return
    if launcher == 'pytorch' and 'RANK' not in os.environ:
        raise UsageError('--launcher pytorch needs the environment torchrun sets (RANK, '
                         'WORLD_SIZE, ...): start with tools/dist_train.sh CONFIG NPROC')
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict())
    timeout = int(os.environ.get('MAMBAOUT_DENSE_DIST_TIMEOUT', dist_cfg.get('timeout', 1800)))
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
    timeout = os.environ.get('MAMBAOUT_DENSE_DIST_TIMEOUT', 'env_cfg.dist_cfg.timeout')
    return (f'rank {dist.get_rank()} of {dist.get_world_size()}: a collective operation failed '
            f'because another rank died or stopped responding ({type(err).__name__}: {first}). '
            f'The run stops here; a rank that hangs is given up on after the collective timeout '
            f'({timeout} s, MAMBAOUT_DENSE_DIST_TIMEOUT). Resume with --resume once the cause '
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


def ensure_plain_checkpoints(cfg: Config) -> None:
    """Add :class:`~mambaout_dense.engine.PlainCheckpointHook` unless the config has it."""
    hooks: List[dict] = list(cfg.get('custom_hooks', None) or [])
    names = {str(h.get('type', '')).split('.')[-1] for h in hooks}
    if 'PlainCheckpointHook' not in names:
        hooks.append(dict(type='mambaout_dense.PlainCheckpointHook'))
    cfg.custom_hooks = hooks


def reliability_hooks(action: Optional[str] = None) -> List[Tuple[str, dict]]:
    """(type name, config) of the hooks ``tools/train.py`` adds to every run."""
    guard = dict(type='mambaout_dense.DivergenceGuardHook')
    if action:
        guard['action'] = action
    return [('DivergenceGuardHook', guard),
            ('RandomStateHook', dict(type='mambaout_dense.RandomStateHook')),
            ('CheckpointCompatibilityHook',
             dict(type='mambaout_dense.CheckpointCompatibilityHook'))]


def ensure_reliability_hooks(cfg: Config, on_divergence: Optional[str] = None,
                             training: bool = True) -> None:
    """Add the fault-tolerance hooks of :mod:`mambaout_dense.engine` to ``cfg``.

    Training runs get ``DivergenceGuardHook`` (NaN/Inf loss: stop or skip),
    ``RandomStateHook`` (exact resume) and ``CheckpointCompatibilityHook`` (refuse checkpoints
    of another architecture), and mmengine's ``CheckpointHook`` becomes ``SafeCheckpointHook``
    (prunes old checkpoints after saving); evaluation runs get ``CheckpointCompatibilityHook``
    only. Hooks the config lists already are kept as they are.

    Args:
        cfg (Config): The config (modified in place).
        on_divergence (str, optional): ``'stop'`` or ``'skip'``; overrides the config's
            ``DivergenceGuardHook(action=...)``. Defaults to None.
        training (bool): A training run. Defaults to True.
    """
    hooks: List[dict] = list(cfg.get('custom_hooks', None) or [])
    by_name = {str(h.get('type', '')).split('.')[-1]: h for h in hooks}
    for name, hook in reliability_hooks(on_divergence):
        if not training and name != 'CheckpointCompatibilityHook':
            continue
        if name not in by_name:
            hooks.append(hook)
        elif name == 'DivergenceGuardHook' and on_divergence:
            by_name[name]['action'] = on_divergence
    cfg.custom_hooks = hooks
    checkpoint = (cfg.get('default_hooks', None) or {}).get('checkpoint', None)
    if training and checkpoint and checkpoint.get('type') in ('CheckpointHook',
                                                              'mmengine.CheckpointHook'):
        checkpoint['type'] = 'mambaout_dense.SafeCheckpointHook'


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


#: Warnings raised by our dependencies on every run that a user of the tools cannot act on:
#: (category, regex of the message).
KNOWN_WARNINGS = (
    (UserWarning, r'pkg_resources is deprecated as an API'),
    (DeprecationWarning, r'pkg_resources is deprecated as an API'),
    (DeprecationWarning, r'Deprecated call to `pkg_resources\.declare_namespace'),
)

_BN_SINGLE = 'Expected more than 1 value per channel when training'


def quiet_known_warnings() -> None:
    """Silence :data:`KNOWN_WARNINGS` (and only those); call before importing mmcv/mmdet/mmseg."""
    import warnings
    for category, message in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category)


def explain_error(err: BaseException) -> Optional[Tuple[str, int]]:
    """(message, exit code) for an error a tool should report without a traceback, else None.

    Covers our own errors (:class:`~mambaout_dense.errors.MambaOutDenseError`), a collective that
    failed because another rank died or hung, and BatchNorm given one value per channel (a batch
    of one image with BN in a head).
    """
    from ..errors import MambaOutDenseError, exit_code
    if isinstance(err, MambaOutDenseError):
        return str(err), exit_code(err)
    if isinstance(err, ValueError) and _BN_SINGLE in str(err):
        return ('a BatchNorm layer received one value per channel in training (the batch holds '
                'a single image, and a head such as UperNet\'s pooling branch normalises a 1x1 '
                'map with BN). Set train_dataloader.batch_size to 2 or more (--cfg-options '
                'train_dataloader.batch_size=2), or use GN/LN in that head '
                f'(norm_cfg). [{err}]'), 2
    if isinstance(err, RuntimeError):
        lost = describe_lost_peer(err)
        if lost is not None:
            return lost, 1
    return None


def run_main(body, *args: Any) -> int:
    """Run a tool's body; known errors become ``error: ...`` on stderr and an exit code.

    Args:
        body (Callable): The tool's work; its return value is ignored.
        *args: Passed to ``body``.

    Returns:
        int: 0 on success, else the code of :func:`explain_error` (2 bad input, 1 failed run).
        Errors that :func:`explain_error` does not know propagate with their traceback.
    """
    import sys
    try:
        body(*args)
    except Exception as err:  # noqa: BLE001 - re-raised below unless explained
        explained = explain_error(err)
        if explained is None:
            raise
        message, code = explained
        print(f'error: {message}', file=sys.stderr)
        return code
    return 0
