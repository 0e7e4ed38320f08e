"""Shared set-up for ``tools/train.py`` and ``tools/test.py``.

Generic over detection and segmentation: the config's ``default_scope`` (``mmdet`` or ``mmseg``)
picks the task registries. Handles what mmengine leaves to the user: ``--cfg-options`` keys that
do not exist or do not parse, distributed runs on machines without CUDA (gloo, no
``torch.cuda.set_device``) with a bounded collective timeout, data folders that are missing,
checkpoints that must load with ``weights_only=True``, and the fault-tolerance hooks of
:mod:`mambaout_dense.engine.reliability` that every training run gets.
"""
import argparse
import difflib
import json
import os
import os.path as osp
from datetime import timedelta
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.config import Config, ConfigDict, DictAction
from mmengine.logging import print_log

__all__ = [
    'UsageError', 'DataError', 'CfgOptionsAction', 'load_config', 'apply_cfg_options',
    'default_work_dir', 'check_work_dir', 'setup_distributed', 'ensure_plain_checkpoints',
    'ensure_reliability_hooks', 'check_data_paths', 'init_task_scope', 'describe_lost_peer'
]

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class UsageError(ValueError):
    """A command-line argument or config option is wrong; shown without a traceback."""


class DataError(FileNotFoundError):
    """A dataset file or folder named by the config does not exist or cannot be read."""


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


def load_config(path: str) -> Config:
    """Read a config file, with a clear error when it does not exist or does not parse."""
    if not osp.isfile(path):
        raise UsageError(f'Config file not found: {path!r}')
    try:
        return Config.fromfile(path)
    except (SyntaxError, ImportError, KeyError, FileNotFoundError) as err:
        raise UsageError(f'Could not read config {path!r}: {type(err).__name__}: {err}') from err


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


def init_task_scope(cfg: Config) -> str:
    """Import the task package named by ``default_scope`` and register its modules.

    Returns:
        str: The scope (``mmdet`` or ``mmseg``).
    """
    scope = cfg.get('default_scope', None)
    if scope == 'mmdet':
        from mmdet.utils import register_all_modules
        register_all_modules(init_default_scope=False)
    elif scope == 'mmseg':
        from mmseg.utils import register_all_modules
        register_all_modules(init_default_scope=False)
    else:
        raise UsageError(f"Config default_scope must be 'mmdet' or 'mmseg', got {scope!r}")
    import mambaout_dense  # noqa: F401  (registers backbones, hooks, datasets)
    return scope


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


def ensure_reliability_hooks(cfg: Config, on_divergence: Optional[str] = None,
                             training: bool = True) -> None:
    """Add the fault-tolerance hooks of :mod:`mambaout_dense.engine.reliability` to ``cfg``.

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
    from .reliability import reliability_hooks
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


def _dataset_cfgs(cfg: Any) -> Iterator[dict]:
    if isinstance(cfg, dict):
        if 'dataset' in cfg and isinstance(cfg['dataset'], dict):
            yield from _dataset_cfgs(cfg['dataset'])
        elif 'datasets' in cfg:
            for sub in cfg['datasets']:
                yield from _dataset_cfgs(sub)
        else:
            yield cfg


def _dataset_paths(ds: dict) -> List[Tuple[str, str]]:
    root = ds.get('data_root', '') or ''
    paths = []
    if root:
        paths.append(('data_root', root))
    if ds.get('ann_file'):
        paths.append(('ann_file', osp.join(root, ds['ann_file'])))
    for key, value in (ds.get('data_prefix', None) or {}).items():
        if isinstance(value, str) and value:
            paths.append((f'data_prefix.{key}', osp.join(root, value)))
    return paths


def _check_json(split: str, path: str) -> None:
    """Parse a ``.json`` annotation file once; raise :class:`DataError` naming it if malformed.

    pycocotools' own error does not name the file, and a bad validation file would otherwise
    fail only after the first training epoch.
    """
    try:
        with open(path, 'rb') as f:
            json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f'{split}: ann_file is not valid JSON: {path!r} ({err}). Regenerate or '
                        f're-download it.') from err


def check_data_paths(cfg: Config, splits: Tuple[str, ...]) -> None:
    """Fail early, naming the path, when a dataset folder or annotation file is missing, or
    when a ``.json`` annotation file does not parse.

    Args:
        cfg (Config): The config.
        splits (tuple[str]): Dataloader keys to check, e.g. ('train_dataloader',).

    Raises:
        DataError: With the missing path and how to get data (download or synthetic).
    """
    scope = cfg.get('default_scope', 'mmdet')
    kind = 'coco' if scope == 'mmdet' else 'ade'
    for split in splits:
        loader = cfg.get(split, None)
        if not loader:
            continue
        for ds in _dataset_cfgs(loader.get('dataset', {})):
            for what, path in _dataset_paths(ds):
                if path.startswith(('http://', 'https://', 's3://')):
                    continue
                if not osp.exists(path):
                    root = ds.get('data_root', '') or osp.dirname(path)
                    raise DataError(
                        f'{split}: {what} not found: {path!r}. Put the dataset there (see '
                        f'README.md, "Datasets"), set data_root with --cfg-options, or make a '
                        f'synthetic one: python {osp.join(REPO_ROOT, "tools", "make_synthetic.py")}'
                        f' {kind} --out {root}')
                if what == 'ann_file' and path.endswith('.json'):
                    _check_json(split, path)



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
