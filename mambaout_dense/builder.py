"""From a config file to a model: the one place that reads configs and builds what they describe.

Used by the tools (``tools/*.py``), the analysis code and ``benchmarks/``. A config's
``default_scope`` (``mmdet`` or ``mmseg``) picks the task registries; the task package is
imported only when a config asks for it, so a segmentation config never imports mmdet and a
detection config never imports mmseg.

Config paths may name a file inside an installed task package (``mmdet::swin/...py``,
``mmseg::...``), as mmengine's ``_base_`` entries do.
"""
import copy
import importlib
import os.path as osp
import warnings
from typing import Any, Dict, Optional

import torch
from mmengine.config import Config

from .errors import UsageError

__all__ = [
    'TASK_SCOPES', 'BACKBONE_FAMILIES', 'resolve_config_path', 'load_config', 'init_task_scope',
    'task_models_registry', 'build_model', 'build_backbone', 'build_backbone_by_name',
    'is_backbone_name'
]

#: Scopes a config's ``default_scope`` may name, with the package that provides them.
TASK_SCOPES: Dict[str, str] = {'mmdet': 'mmdet', 'mmseg': 'mmseg'}
#: Backbone name prefixes (``mambaout_tiny``, ``vmamba_tiny``, ``hybrid_tiny``) -> registry type.
BACKBONE_FAMILIES: Dict[str, str] = {
    'mambaout': 'MambaOut', 'vmamba': 'VMamba', 'hybrid': 'HybridBackbone'}


def resolve_config_path(path: str) -> str:
    """A local path for ``path``; ``PACKAGE::REL`` names a config shipped inside a package.

    Raises:
        UsageError: The package is not installed.
    """
    if '::' not in path:
        return osp.expanduser(path)
    package, rel = path.split('::', 1)
    try:
        module = importlib.import_module(package)
    except ImportError as err:
        raise UsageError(f'config {path!r} names the package {package!r}, which is not '
                         f'installed ({err})') from None
    return osp.join(osp.dirname(module.__file__), '.mim', 'configs', rel)


def load_config(path: str) -> Config:
    """Read a config file, with a clear error when it does not exist or does not parse.

    Args:
        path (str): A file, or ``mmdet::REL`` / ``mmseg::REL``.

    Returns:
        Config: The config; its ``custom_imports`` have been imported.

    Raises:
        UsageError: The file is missing or cannot be read.
    """
    local = resolve_config_path(path)
    if not osp.isfile(local):
        raise UsageError(f'Config file not found: {path!r}')
    try:
        with warnings.catch_warnings():  # local: mmengine's pkg_resources use, not actionable
            warnings.filterwarnings('ignore', message='pkg_resources is deprecated as an API')
            warnings.filterwarnings('ignore', message='Deprecated call to `pkg_resources')
            return Config.fromfile(local)
    except (SyntaxError, ImportError, KeyError, FileNotFoundError) as err:
        raise UsageError(f'Could not read config {path!r}: {type(err).__name__}: {err}') from err


def init_task_scope(cfg: Config) -> str:
    """Register the modules of the task package named by ``default_scope``, and ours.

    Args:
        cfg (Config): A detection or segmentation config.

    Returns:
        str: The scope (``mmdet`` or ``mmseg``).

    Raises:
        UsageError: ``default_scope`` is missing or not a task scope.
    """
    scope = cfg.get('default_scope', None)
    if scope not in TASK_SCOPES:
        raise UsageError(f"Config default_scope must be one of {sorted(TASK_SCOPES)}, "
                         f'got {scope!r}')
    utils = importlib.import_module(f'{TASK_SCOPES[scope]}.utils')
    utils.register_all_modules(init_default_scope=False)
    importlib.import_module('mambaout_dense.models')  # registers the backbones
    importlib.import_module('mambaout_dense.engine')  # registers the hooks
    return scope


def task_models_registry(scope: str):
    """The ``MODELS`` registry of a task scope."""
    return importlib.import_module(f'{TASK_SCOPES[scope]}.registry').MODELS


def _without_pretrained(model_cfg: Any) -> Any:
    """A copy of a model config whose backbone loads no pretrained weights."""
    model_cfg = copy.deepcopy(model_cfg)
    model_cfg.pop('pretrained', None)
    backbone = model_cfg.get('backbone', None)
    if backbone is not None:
        backbone.pop('init_cfg', None)
        backbone.pop('pretrained', None)
    return model_cfg


def build_model(cfg: Config, pretrained: bool = False,
                overrides: Optional[Dict[str, Any]] = None) -> torch.nn.Module:
    """Build ``cfg.model`` with the registry of the config's task.

    Args:
        cfg (Config): A detection or segmentation config.
        pretrained (bool): Keep the backbone's ``init_cfg``/``pretrained`` (weights then load,
            or download, on ``init_weights()``). Defaults to False (random weights).
        overrides (dict, optional): Merged into the config first, as ``--cfg-options`` are
            (``dict(model=dict(...))`` or dotted keys such as ``'model.neck.out_channels'``).
            Defaults to None.

    Returns:
        nn.Module: The detector or segmentor (not initialised; call ``init_weights()``).
    """
    from mmengine.registry import DefaultScope
    scope = init_task_scope(cfg)
    if overrides:
        cfg = copy.deepcopy(cfg)
        cfg.merge_from_dict(overrides)
    model_cfg = cfg.model if pretrained else _without_pretrained(cfg.model)
    with DefaultScope.overwrite_default_scope(scope):
        return task_models_registry(scope).build(model_cfg)


def build_backbone(cfg: Config, pretrained: bool = False, **overrides: Any) -> torch.nn.Module:
    """Build ``cfg.model.backbone`` with the registry of the config's task.

    Args:
        cfg (Config): A detection or segmentation config.
        pretrained (bool): Keep the backbone's ``init_cfg``. Defaults to False.
        **overrides: Keys set on the backbone config (e.g. ``out_indices=(0, 1, 2, 3)``).

    Returns:
        nn.Module: The backbone (not initialised; call ``init_weights()``).
    """
    from mmengine.registry import DefaultScope
    scope = init_task_scope(cfg)
    backbone = copy.deepcopy(cfg.model.backbone)
    if not pretrained:
        backbone.pop('init_cfg', None)
        backbone.pop('pretrained', None)
    backbone.update(overrides)
    with DefaultScope.overwrite_default_scope(scope):
        return task_models_registry(scope).build(backbone)


def build_backbone_by_name(name: str, **kwargs: Any) -> torch.nn.Module:
    """Build ``FAMILY_ARCH`` (e.g. ``mambaout_tiny``, ``vmamba_small``) from our registry.

    Args:
        name (str): ``{mambaout,vmamba,hybrid}_{arch}``.
        **kwargs: Further constructor arguments (``out_indices`` ...).

    Returns:
        nn.Module: The backbone.

    Raises:
        UsageError: Unknown family (the message lists the valid ones); the backbone itself
            rejects an unknown arch with the list of valid ones.
    """
    importlib.import_module('mambaout_dense.models')  # registers the backbones
    from .registry import MODELS, SCOPE
    family, _, arch = name.partition('_')
    if family not in BACKBONE_FAMILIES or not arch:
        raise UsageError(f'Unknown backbone name {name!r}; expected FAMILY_ARCH with FAMILY in '
                         f'{", ".join(BACKBONE_FAMILIES)} (e.g. mambaout_tiny)')
    # the scoped name: a default scope left by a runner (mmdet, mmseg) must not redirect it
    return MODELS.build(dict(type=f'{SCOPE}.{BACKBONE_FAMILIES[family]}', arch=arch, **kwargs))


def is_backbone_name(name: str) -> bool:
    """True for names such as ``mambaout_tiny``, ``vmamba_small``, ``hybrid_femto``."""
    family = name.split('_', 1)[0]
    return family in BACKBONE_FAMILIES and '_' in name and not name.endswith('.py')
