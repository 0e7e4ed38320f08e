"""The command-line layer of ``tools/*.py``: one way from arguments to a config, one error rule.

Every tool reads its config with :func:`prepare_config` (load, apply ``--cfg-options``, register
the task's modules), takes ``--cfg-options`` through :class:`CfgOptionsAction` (added by
:func:`add_cfg_options`: bad syntax, keys the config does not have and values of the wrong kind
are usage errors), builds a backbone from a config or a backbone name with :func:`load_backbone`,
checks a requested device with :func:`check_device`, and runs its body through :func:`run_main`:
a mistake the user can fix (:class:`~mambaout_dense.errors.MambaOutDenseError`, an argument a
class does not take, a type name no registry knows) becomes one ``error: ...`` line and exit code
2, a run that failed exit code 1. :func:`quiet_known_warnings` silences, by category, message and
module, the warnings of our dependencies that a user cannot act on.

Nothing in the library imports this module; distributed set-up and hook injection live in
:mod:`mambaout_dense.engine.distributed` and :mod:`mambaout_dense.engine.hook_injection`.

A tool (or a script that wants the same behaviour) needs three lines::

    parser.add_argument('config'); add_cfg_options(parser)
    cfg = prepare_config(parser.parse_args(argv))   # inside a body run by run_main
"""
import argparse
import difflib
import logging
import os
import os.path as osp
import re
import sys
import warnings
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.config import Config, DictAction

from .builder import (
    build_backbone,
    build_backbone_by_name,
    init_task_scope,
    is_backbone_name,
    load_config,
)
from .errors import ConfigError, MambaOutDenseError, UnavailableError, UsageError, exit_code

__all__ = [
    'doc_parser', 'CfgOptionsAction', 'add_cfg_options', 'apply_cfg_options', 'prepare_config',
    'BackboneTarget', 'load_backbone', 'check_device', 'check_amp', 'default_work_dir',
    'check_work_dir', 'set_work_dir', 'make_runner', 'KNOWN_WARNINGS', 'KNOWN_LOG_MESSAGES',
    'quiet_known_warnings', 'quiet_known_log_messages', 'explain_error', 'run_main'
]


# ------------------------------------------------------------------------ config options
def doc_parser(doc: str) -> argparse.ArgumentParser:
    """An argument parser described by a tool's module docstring.

    The first paragraph is the description; the paragraphs after the second (the usage
    examples and notes) are the epilog, shown as written.
    """
    parts = doc.split('\n\n', 2)
    return argparse.ArgumentParser(description=parts[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter,
                                   epilog=parts[2] if len(parts) > 2 else None)


class CfgOptionsAction(DictAction):
    """mmengine's ``DictAction`` whose syntax errors are argparse usage errors (exit 2).

    ``DictAction`` raises ``ValueError`` for ``key`` without ``=`` and ``AssertionError`` for
    unbalanced brackets, which argparse shows as a traceback. Unknown keys and values of the
    wrong kind are refused when the options are applied (:func:`apply_cfg_options`).
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


def add_cfg_options(parser: argparse.ArgumentParser,
                    help: str = 'override config keys, e.g. train_cfg.max_iters=100; prefix a '
                    'key with + to add a new one') -> None:
    """Add ``--cfg-options KEY=VALUE ...`` (:class:`CfgOptionsAction`) to ``parser``."""
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, metavar='KEY=VALUE',
                        help=help)


def _flatten(cfg: Any, prefix: str = '') -> Iterator[Tuple[str, Any]]:
    """(dotted key, value) of every node; list items are keyed by their index."""
    items = (cfg.items() if isinstance(cfg, dict) else
             enumerate(cfg) if isinstance(cfg, (list, tuple)) else ())
    for key, value in items:
        name = f'{prefix}{key}'
        yield name, value
        yield from _flatten(value, name + '.')


def _expected_kind(old: Any, new: Any) -> Optional[str]:
    """The kind a ``--cfg-options`` value must have to replace ``old``, or None when ``new`` fits.

    Numbers, booleans and strings keep their kind (an integer key takes an integer, a float key
    any number); a dict is replaced only by None (set its keys instead); None and sequences take
    anything (mmdet and mmseg accept ``metric='bbox'`` for ``metric=['bbox']``).
    """
    if old is None or new is None:
        return None
    if isinstance(old, bool):
        return None if isinstance(new, bool) else 'True or False'
    number = isinstance(new, (int, float)) and not isinstance(new, bool)
    if isinstance(old, int):
        return None if number and isinstance(new, int) else 'an integer'
    if isinstance(old, float):
        return None if number else 'a number'
    if isinstance(old, str):
        return None if isinstance(new, (str, list, tuple)) else 'a string'
    if isinstance(old, dict):
        return 'a dict (set its keys one by one, e.g. KEY.type=...), or None'
    return None


def apply_cfg_options(cfg: Config, options: Optional[Dict[str, Any]]) -> None:
    """Merge ``--cfg-options`` into ``cfg``, refusing unknown keys and values of the wrong kind.

    A typo would otherwise add a new, unused key silently, and a value of the wrong kind would
    fail deep inside the run without naming its key. Prefix a key with ``+`` to add a key, or
    change the kind of a value, on purpose (``+model.backbone.with_cp=True``).

    Args:
        cfg (Config): The config (modified in place).
        options (dict, optional): Parsed by :class:`CfgOptionsAction`.

    Raises:
        ConfigError: A key does not exist (the message lists the closest existing keys), or its
            value has another kind than the config's (the message names the key and the kind).
    """
    if not options:
        return
    existing = dict(_flatten(cfg._cfg_dict.to_dict()))
    merged = {}
    for key, value in options.items():
        if key.startswith('+'):
            merged[key[1:]] = value
            continue
        if key not in existing:
            close = difflib.get_close_matches(key, sorted(existing), n=3, cutoff=0.6)
            hint = f' Did you mean: {", ".join(close)}?' if close else ''
            raise ConfigError(f'--cfg-options: the config has no key {key!r}.{hint} '
                              f'(Write +{key}=... to add a new key on purpose.)')
        kind = _expected_kind(existing[key], value)
        if kind is not None:
            raise ConfigError(f'--cfg-options {key}={value!r}: {key} takes {kind} (the config '
                              f'holds {existing[key]!r}). Write +{key}=... to set it anyway.')
        merged[key] = value
    cfg.merge_from_dict(merged)


def prepare_config(args: argparse.Namespace, config_attr: str = 'config') -> Config:
    """Load the config named by ``args``, apply its ``--cfg-options``, register its task.

    Args:
        args (Namespace): Parsed arguments: the config path under ``config_attr`` and, when
            present, ``cfg_options`` (a dict, as :class:`CfgOptionsAction` gives). A script can
            pass ``argparse.Namespace(config=PATH, cfg_options={...})``.
        config_attr (str): Attribute of ``args`` holding the path. Defaults to 'config'.

    Returns:
        Config: The config, with the modules of its ``default_scope`` registered.

    Raises:
        UsageError: Missing or unreadable config, bad options, or an unknown ``default_scope``.
    """
    cfg = load_config(getattr(args, config_attr))
    apply_cfg_options(cfg, getattr(args, 'cfg_options', None))
    init_task_scope(cfg)
    return cfg


class BackboneTarget(NamedTuple):
    """A backbone built from a config file or a backbone name (:func:`load_backbone`).

    Attributes:
        model (nn.Module): The backbone (not initialised).
        cfg (Config | None): The config, or None for a backbone name.
        name (str): The backbone name, or the config file's stem.
    """
    model: torch.nn.Module
    cfg: Optional[Config]
    name: str


def load_backbone(target: str, cfg_options: Optional[Dict[str, Any]] = None,
                  all_stages: bool = False) -> BackboneTarget:
    """Build the backbone of a config file (its ``model.backbone``) or of a backbone name.

    Args:
        target (str): A config file (or ``mmdet::...``), or ``FAMILY_ARCH`` such as
            ``mambaout_tiny``.
        cfg_options (dict, optional): ``--cfg-options`` for a config file. Defaults to None.
        all_stages (bool): Return every stage (``out_indices=(0, 1, 2, 3)``) whatever the task
            uses. Defaults to False.

    Returns:
        BackboneTarget: The backbone, the config (None for a name) and a name for file names.

    Raises:
        UsageError: A backbone name given ``--cfg-options``, an unknown family or arch, or a
            config that cannot be read.
    """
    every = dict(out_indices=(0, 1, 2, 3)) if all_stages else {}
    if is_backbone_name(target):
        if cfg_options:
            raise UsageError(f'--cfg-options needs a config file; {target!r} is a backbone name')
        return BackboneTarget(build_backbone_by_name(target, **every), None, target)
    cfg = prepare_config(argparse.Namespace(config=target, cfg_options=cfg_options))
    overrides = every if 'out_indices' in cfg.model.backbone else {}
    return BackboneTarget(build_backbone(cfg, **overrides), cfg,
                          osp.splitext(osp.basename(target))[0])


# ------------------------------------------------------------------- machine and folders
def check_device(device: str, option: str = '--device') -> torch.device:
    """The device named by ``device``, when this machine has it.

    Raises:
        UsageError: The name is not a device.
        UnavailableError: A CUDA device without CUDA, or an index the machine does not have.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise UsageError(f'{option} {device!r} is not a device (e.g. cpu, cuda, cuda:0): '
                         f'{err}') from None
    if dev.type == 'cuda':
        if not torch.cuda.is_available():
            raise UnavailableError(f'{option} {device}: CUDA is not available on this machine; '
                                   f'use {option} cpu')
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise UnavailableError(f'{option} {device}: this machine has '
                                   f'{torch.cuda.device_count()} CUDA device(s)')
    return dev


def check_amp(cfg: Config) -> None:
    """Refuse mixed precision (``AmpOptimWrapper``, as ``--amp`` sets) without an accelerator.

    Raises:
        UnavailableError: The run would train with AMP on a CPU-only machine.
    """
    from mmengine.device import get_device
    wrapper = cfg.get('optim_wrapper', None) or {}
    if str(wrapper.get('type', '')).split('.')[-1] == 'AmpOptimWrapper' and \
            get_device() == 'cpu':
        raise UnavailableError('mixed precision (--amp, optim_wrapper.type=AmpOptimWrapper) '
                               'needs a GPU and this machine has none: train without --amp '
                               '(--cfg-options optim_wrapper.type=OptimWrapper)')


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


def set_work_dir(cfg: Config, args: argparse.Namespace) -> str:
    """Set ``cfg.work_dir``: ``--work-dir``, else the config's, else :func:`default_work_dir`.

    Raises:
        UsageError: The folder cannot be created or written (:func:`check_work_dir`).
    """
    cfg.work_dir = args.work_dir or cfg.get('work_dir', None) or default_work_dir(args.config)
    check_work_dir(cfg.work_dir)
    return cfg.work_dir


def make_runner(cfg: Config):
    """mmengine's Runner for ``cfg`` (``runner_type`` honoured), its known log noise silenced."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    quiet_known_log_messages(runner.logger)
    return runner


# ------------------------------------------------------------------------------ warnings
#: Warnings our dependencies raise on every run that a user of the tools cannot act on:
#: (category, regex of the message, regex of the module that raises it).
KNOWN_WARNINGS = (
    (UserWarning, r'pkg_resources is deprecated as an API', ''),
    (DeprecationWarning, r'pkg_resources is deprecated as an API', ''),
    (DeprecationWarning, r'Deprecated call to `pkg_resources\.declare_namespace', ''),
    # mmseg's decode heads build their losses through its own deprecated helper
    (UserWarning, r'``build_loss`` would be deprecated soon', r'mmseg\.models\.builder'),
    # mmseg's CrossEntropyLoss on every build where the config keeps mmseg's default
    (UserWarning, r'Default ``avg_non_ignore`` is False', r'mmseg\.models\.losses'),
    # mmseg's own ADE20K pipelines pass reduce_zero_label to LoadAnnotations
    (UserWarning, r'`reduce_zero_label` will be deprecated', r'mmseg\.datasets\.transforms'),
)

#: Log records (mmengine's logger) that a user cannot act on: regexes of the message.
KNOWN_LOG_MESSAGES = (
    # mmengine's CheckpointHook builds a FileClient it does not use (file_client_args=None)
    r'^"FileClient" will be deprecated in future',
    r'^"HardDiskBackend" is the alias of "LocalBackend"',
    # mmseg's IoUMetric (and mambaout_dense.ClassIoUMetric, built on it) has no default prefix;
    # its keys ('mIoU') are what configs refer to
    r'^The prefix is not set in metric class (Class)?IoUMetric',
)


def quiet_known_warnings() -> None:
    """Silence :data:`KNOWN_WARNINGS` (and only those); call before importing mmcv/mmdet/mmseg."""
    for category, message, module in KNOWN_WARNINGS:
        warnings.filterwarnings('ignore', message=message, category=category, module=module)


class _KnownMessages(logging.Filter):
    """Drops the records of :data:`KNOWN_LOG_MESSAGES`."""

    patterns = [re.compile(p) for p in KNOWN_LOG_MESSAGES]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_known_log_messages(logger: logging.Logger) -> None:
    """Drop :data:`KNOWN_LOG_MESSAGES` from ``logger`` (a Runner's ``MMLogger``)."""
    if not any(isinstance(f, _KnownMessages) for f in logger.filters):
        logger.addFilter(_KnownMessages())


# -------------------------------------------------------------------------- error rule
_BN_SINGLE = 'Expected more than 1 value per channel when training'
_UNKNOWN_ARGUMENT = re.compile(r'got an unexpected keyword argument')
_UNKNOWN_TYPE = re.compile(r' is not in the [\w:]+ registry')


def explain_error(err: BaseException) -> Optional[Tuple[str, int]]:
    """(message, exit code) for an error a tool should report without a traceback, else None.

    Covers our own errors (:class:`~mambaout_dense.errors.MambaOutDenseError`: the mistakes a
    user can fix, exit code 2; a diverged run, 1), a config that passes an argument a class
    does not take or names a type no registry knows (2), BatchNorm given one value per channel
    (2), and a collective that failed because another rank died or hung (1).
    """
    from .engine.distributed import describe_lost_peer
    if isinstance(err, MambaOutDenseError):
        return str(err), exit_code(err)
    if isinstance(err, TypeError) and _UNKNOWN_ARGUMENT.search(str(err)):
        return (f'the config passes an argument that the class does not take: {err} (a '
                'misspelled key?)'), 2
    if isinstance(err, KeyError) and err.args and _UNKNOWN_TYPE.search(str(err.args[0])):
        return str(err.args[0]).split(' Please check')[0] + ' (a misspelled type name?)', 2
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


def apply_preset(parser: argparse.ArgumentParser, args: argparse.Namespace,
                 argv: Sequence[str], values: Dict[str, Any]) -> argparse.Namespace:
    """Set a preset's ``values`` on ``args``, except options given in ``argv`` (flags win).

    Args:
        parser (ArgumentParser): The parser that read ``argv``.
        args (Namespace): Its result, changed in place.
        argv (Sequence[str]): The command line (``--opt value`` or ``--opt=value``).
        values (dict): Preset value per destination name.

    Returns:
        Namespace: ``args``.
    """
    given = {a.dest for a in parser._actions
             if any(x == opt or x.startswith(opt + '=') for x in argv for opt in a.option_strings)}
    for k, v in values.items():
        if k not in given:
            setattr(args, k, v)
    return args


def run_main(body: Callable[..., Any], *args: Any) -> int:
    """Run a tool's body; known errors become one ``error: ...`` line on stderr and a code.

    :data:`KNOWN_WARNINGS` are silenced first (the body imports mmdet/mmseg).

    Args:
        body (Callable): The tool's work; its return value is returned when it is an int.
        *args: Passed to ``body``.

    Returns:
        int: 0 on success (or ``body``'s own int), else the code of :func:`explain_error`
        (2 bad input, 1 failed run). Errors that :func:`explain_error` does not know propagate
        with their traceback.
    """
    quiet_known_warnings()
    try:
        result = body(*args)
    except Exception as err:  # noqa: BLE001 - re-raised below unless explained
        explained = explain_error(err)
        if explained is None:
            raise
        message, code = explained
        print(f'error: {" ".join(message.split())}', file=sys.stderr)
        return code
    return result if isinstance(result, int) else 0
