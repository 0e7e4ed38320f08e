#!/usr/bin/env python
"""Effective receptive field of each backbone stage (gradient of the central output location).

Writes erf_<name>.png (log-scaled heat-maps per stage), erf_<name>.json and erf_<name>.md (radius
holding 50% / 90% of the gradient mass, in input pixels) into --out.

    python tools/analysis/erf.py configs/upernet_mambaout_t.py                 # random weights
    python tools/analysis/erf.py configs/upernet_vmamba_t.py --checkpoint work_dirs/x/latest.pth
    python tools/analysis/erf.py configs/upernet_hybrid_t.py --from-dataset --images 16
    python tools/analysis/erf.py mambaout_tiny --shape 256 256                  # a backbone name
"""
import argparse
import os.path as osp
import sys

from mmengine.config import DictAction


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n', 2)[2])
    parser.add_argument('config', metavar='CONFIG',
                        help='a config file (its model.backbone), or FAMILY_ARCH such as '
                        'mambaout_tiny')
    parser.add_argument('--checkpoint', help='weights: a detector/segmentor checkpoint (keys '
                        'under backbone.) or a backbone/classification one; strict')
    parser.add_argument('--images', type=int, default=8, help='number of images (default 8)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'), default=(512, 512),
                        help='input size (default 512 512)')
    parser.add_argument('--source', choices=('scene', 'noise'), default='scene',
                        help='synthetic images: natural-looking scenes or noise (default scene)')
    parser.add_argument('--from-dataset', action='store_true',
                        help="use the config's validation images instead")
    parser.add_argument('--out', default='work_dirs/analysis/erf', help='output folder')
    parser.add_argument('--name', help='name in file names (default: config/backbone name)')
    parser.add_argument('--batch-size', type=int, default=2)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument('--device', default='cpu', help="'cpu' or 'cuda'")
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys (e.g. model.backbone.arch=test)')
    args = parser.parse_args(argv)

    import torch

    from mambaout_dense.analysis import erf
    from mambaout_dense.builder import (
        build_backbone,
        build_backbone_by_name,
        is_backbone_name,
        load_config,
    )
    from mambaout_dense.engine.launch import apply_cfg_options
    from mambaout_dense.errors import MambaOutDenseError, UsageError
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    try:
        cfg = None
        if is_backbone_name(args.config):
            if args.from_dataset:
                raise UsageError('--from-dataset needs a config file')
            model = build_backbone_by_name(args.config, out_indices=(0, 1, 2, 3))
            name = args.name or args.config
        else:
            cfg = load_config(args.config)
            apply_cfg_options(cfg, args.cfg_options)
            bb = cfg.model.backbone
            overrides = {}
            if 'out_indices' in bb:  # every stage, whatever the task uses
                overrides['out_indices'] = (0, 1, 2, 3)
            model = build_backbone(cfg, **overrides)
            name = args.name or osp.splitext(osp.basename(args.config))[0]
        erf.init_weights_quietly(model)
        extra = dict(weights='random', source='dataset' if args.from_dataset else args.source)
        if args.checkpoint:
            report = erf.load_backbone_checkpoint(model, args.checkpoint)
            extra.update(weights=args.checkpoint, loaded=report['loaded'],
                         checkpoint_layout=report['source'])
        shape = tuple(args.shape)
        if args.from_dataset:
            images = erf.dataset_images(cfg, args.images, shape)
        else:
            mean, std, _ = erf.preprocessor_stats(cfg)
            images = erf.synthetic_images(args.images, shape, args.seed, args.source, mean, std)
    except (MambaOutDenseError, ValueError, FileNotFoundError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    model = model.to(args.device)
    result = erf.run_erf(model, images.to(args.device), args.out, name,
                         batch_size=args.batch_size, progress=True, extra=extra)
    print(erf.erf_markdown(result['rows']))
    print('\nwrote ' + ', '.join(result['files']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
