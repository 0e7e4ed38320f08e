#!/usr/bin/env python
"""Evaluate a checkpoint on the config's test set (detection or segmentation).

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR] [--tta]
    tools/dist_test.sh CONFIG CHECKPOINT 8
"""
import argparse
import os
import os.path as osp
import sys
from typing import Optional

from mambaout_dense.cli import add_cfg_options, run_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation log goes')
    parser.add_argument('--out', help='dump the predictions to this pickle file')
    parser.add_argument('--show-dir', help='write prediction overlays (PNG) into this folder')
    parser.add_argument('--show-num', type=int, default=None, metavar='N',
                        help='with --show-dir: draw only the first N test images')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (multi-scale + flip) from the config')
    add_cfg_options(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def _enable_visualization(cfg, scope: str) -> None:
    """Turn on drawing in the visualization hook for every test image.

    Configs without one (mmseg keeps it in its schedule bases, which synthetic configs do not
    inherit) get the task's default hook.
    """
    hooks = cfg.setdefault('default_hooks', {})
    if hooks.get('visualization', None) is None:
        hooks['visualization'] = dict(
            type='DetVisualizationHook' if scope == 'mmdet' else 'SegVisualizationHook')
    hook = hooks['visualization']
    hook['draw'] = True
    if scope == 'mmseg':
        hook['interval'] = 1  # mmseg draws every `interval`-th image only


def _save_overlays_as_png(visualizer, show_dir: str, limit: Optional[int] = None) -> None:
    """Make ``visualizer`` write each drawn test image to ``show_dir/<image stem>.png``.

    mmdet's hook would name the overlay after the input (``.jpg``, lossy) and mmseg's sends it
    to the vis backend (``vis_data/vis_image/test_<name>_<step>.png``); this gives both tasks the
    same flat folder of PNGs. With ``limit``, only the first ``limit`` images are drawn.
    """
    os.makedirs(show_dir, exist_ok=True)
    draw = visualizer.add_datasample
    drawn = [0]

    def add_datasample(name, image, data_sample=None, *args, out_file=None, step=0, **kwargs):
        if limit is not None and drawn[0] >= limit:
            return None
        drawn[0] += 1
        img_path = data_sample.get('img_path', None) if data_sample is not None else None
        stem = osp.splitext(osp.basename(img_path))[0] if img_path else f'{name}_{step}'
        return draw(name, image, data_sample, *args, out_file=osp.join(show_dir, stem + '.png'),
                    step=step, **kwargs)

    visualizer.add_datasample = add_datasample


def build_runner(args: argparse.Namespace):
    import mambaout_dense.safe_io  # noqa: F401  (safe checkpoint reads, atomic writes)
    from mambaout_dense.checkpoint import safe_load
    from mambaout_dense.cli import make_runner, prepare_config, set_work_dir
    from mambaout_dense.datasets.paths import check_data_paths
    from mambaout_dense.engine.distributed import setup_distributed
    from mambaout_dense.engine.hook_injection import ensure_reliability_hooks
    from mambaout_dense.errors import UsageError
    cfg = prepare_config(args)
    scope = cfg.default_scope
    if not osp.isfile(args.checkpoint):
        raise UsageError(f'checkpoint not found: {args.checkpoint!r}')
    safe_load(args.checkpoint)  # refuses unsafe, corrupt or non-finite files before building
    set_work_dir(cfg, args)
    cfg.load_from = args.checkpoint
    ensure_reliability_hooks(cfg, training=False)  # refuse checkpoints of another architecture
    if args.show_dir:
        _enable_visualization(cfg, scope)
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

    runner = make_runner(cfg)
    if args.show_dir:
        _save_overlays_as_png(runner.visualizer, osp.abspath(args.show_dir), args.show_num)
    return runner


def test(args: argparse.Namespace) -> None:
    build_runner(args).test()
    if args.show_dir:
        count = len([n for n in os.listdir(args.show_dir) if n.endswith('.png')])
        print(f'prediction images ({count}): {osp.abspath(args.show_dir)}')


def main(argv=None) -> int:
    return run_main(test, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
