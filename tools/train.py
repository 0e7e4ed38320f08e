#!/usr/bin/env python
"""Train a detector or segmentor from a config (the config's ``default_scope`` picks the task).

    python tools/train.py configs/mask_rcnn_mambaout_t.py
    python tools/train.py CONFIG --work-dir DIR --resume [auto|PATH] --amp --cfg-options k=v
    tools/dist_train.sh CONFIG 8            # torchrun, one process per GPU (gloo on CPU)

Every run gets the hooks of ``mambaout_dense.engine``: a NaN/Inf loss stops the run
(``--on-divergence skip`` skips the step instead) and is never checkpointed, checkpoints are
written atomically, ``--resume`` refuses unsafe, truncated or non-finite files (``auto`` falls
back to the newest usable one) and restores the random state, so a resumed run matches an
uninterrupted one. Exit codes: 0 done, 1 diverged, 2 bad arguments, data or checkpoint.
"""
import argparse
import os
import os.path as osp
import sys

from mambaout_dense.cli import add_cfg_options, run_main


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector or segmentor')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the learning rate by the actual total batch size')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from PATH, or (without a value) from the latest '
                        'checkpoint in the work dir')
    parser.add_argument('--on-divergence', choices=['stop', 'skip'],
                        help='what a NaN/Inf loss or gradient does: stop the run (default) or '
                        'skip the step')
    add_cfg_options(parser)
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
                        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def build_runner(args: argparse.Namespace):
    import torch

    import mambaout_dense.safe_io  # noqa: F401  (safe checkpoint reads, atomic writes)
    from mambaout_dense.cli import check_amp, make_runner, prepare_config, set_work_dir
    from mambaout_dense.datasets.paths import check_data_paths
    from mambaout_dense.engine.distributed import replace_sync_bn, setup_distributed
    from mambaout_dense.engine.hook_injection import (
        ensure_plain_checkpoints,
        ensure_reliability_hooks,
    )
    from mambaout_dense.engine.resume import checkpoint_problem, find_resumable_checkpoint
    from mambaout_dense.errors import CheckpointError, UsageError
    cfg = prepare_config(args)
    if args.amp:
        if cfg.optim_wrapper.get('type', 'OptimWrapper') == 'AmpOptimWrapper':
            print('AMP is already enabled in the config', file=sys.stderr)
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'
    check_amp(cfg)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise UsageError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    set_work_dir(cfg, args)
    if args.resume == 'auto':
        # mmengine would trust work_dir/last_checkpoint; take the newest usable file instead
        latest = find_resumable_checkpoint(cfg.work_dir)
        if latest is not None:
            cfg.resume, cfg.load_from = True, latest
        else:
            cfg.resume = False  # nothing to resume: a fresh run (the config's load_from holds)
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            raise UsageError(f'--resume: checkpoint not found: {args.resume!r}')
        problem = checkpoint_problem(args.resume)
        if problem:
            raise CheckpointError(f'--resume: {problem}')
        cfg.resume, cfg.load_from = True, args.resume
    ensure_plain_checkpoints(cfg)
    ensure_reliability_hooks(cfg, on_divergence=args.on_divergence)
    setup_distributed(cfg, args.launcher)
    check_data_paths(cfg, ('train_dataloader', 'val_dataloader'))
    if args.launcher == 'none' or not torch.cuda.is_available():
        replace_sync_bn(cfg)  # SyncBN needs CUDA and a process group
    return make_runner(cfg)


def train(args: argparse.Namespace) -> None:
    import torch.distributed as dist
    build_runner(args).train()
    # After a finished run, leave the process group before the interpreter exits: gloo's
    # threads torn down at exit can abort a rank ("terminate called without an active
    # exception", SIGABRT). Not after a failure: the failure's own message must come out.
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def main(argv=None) -> int:
    return run_main(train, parse_args(argv))


if __name__ == '__main__':
    sys.exit(main())
