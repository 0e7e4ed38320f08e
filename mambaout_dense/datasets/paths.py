"""Fail early, naming the path, when a dataset named by a config is missing or malformed.

A missing data folder would otherwise fail after the model is built (or, for the validation
set, after the first training epoch), with an error that does not name the path.
"""
import json
import os.path as osp
from typing import Any, Iterator, List, Tuple

from mmengine.config import Config

from ..errors import DataError

__all__ = ['check_data_paths', 'SYNTHETIC_TOOL']

#: The generator of the synthetic sets, suggested when data is missing.
SYNTHETIC_TOOL = osp.join(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))), 'tools',
                          'make_synthetic.py')


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
                        f'README.md, "Configs"), set data_root with --cfg-options, or make a '
                        f'synthetic one: python {SYNTHETIC_TOOL}'
                        f' {kind} --out {root}')
                if what == 'ann_file' and path.endswith('.json'):
                    _check_json(split, path)
