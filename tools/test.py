#!/usr/bin/env python
"""Evaluate a checkpoint on the config's test set (detection or segmentation).

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR] [--tta]
    tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import DictAction


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--show-dir', help='write prediction overlays (PNG) into this folder')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (multi-scale + flip) from the config')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys; prefix a key with + to add a new one')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _enable_visualization(cfg, scope: str, show_dir: str) -> None:
    hook = cfg.default_hooks.get('visualization', None)
    if hook is None:
        raise ValueError('--show-dir needs default_hooks.visualization in the config')
    hook['draw'] = True
    if scope == 'mmdet':
        hook['test_out_dir'] = osp.abspath(show_dir)
    else:
        hook['interval'] = 1
        cfg.visualizer['save_dir'] = osp.abspath(show_dir)


def build_runner(args: argparse.Namespace):
    from mambaout_dense.checkpoint import safe_load
    from mambaout_dense.engine.launch import (UsageError, apply_cfg_options, check_data_paths,
                                              default_work_dir, init_task_scope, load_config,
                                              setup_distributed)
    cfg = load_config(args.config)
    apply_cfg_options(cfg, args.cfg_options)
    scope = init_task_scope(cfg)
    if not osp.isfile(args.checkpoint):
        raise UsageError(f'checkpoint not found: {args.checkpoint!r}')
    safe_load(args.checkpoint)  # refuses unsafe or corrupt files before anything is built
    cfg.work_dir = args.work_dir or cfg.get('work_dir', None) or default_work_dir(args.config)
    cfg.load_from = args.checkpoint
    if args.show_dir:
        _enable_visualization(cfg, scope, args.show_dir)
    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise UsageError('--tta needs tta_model and tta_pipeline in the config')
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise UsageError('--out must end with .pkl or .pickle')
        dump = dict(type='DumpDetResults' if scope == 'mmdet' else 'DumpResults',
                    out_file_path=args.out)
        evaluator = cfg.test_evaluator
        cfg.test_evaluator = (list(evaluator) if isinstance(evaluator, (list, tuple))
                              else [evaluator]) + [dump]
    check_data_paths(cfg, ('test_dataloader', ))
    setup_distributed(cfg, args.launcher)

    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv=None) -> int:
    args = parse_args(argv)
    from mambaout_dense.checkpoint import CheckpointError
    from mambaout_dense.engine.launch import DataError, UsageError
    try:
        runner = build_runner(args)
        runner.test()
    except (UsageError, DataError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    return 0


if __name__ == '__main__':
    sys.exit(main())
