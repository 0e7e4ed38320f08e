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
import sys

from mambaout_dense.cli import add_cfg_options, doc_parser, run_main


def main(argv=None) -> int:
    parser = doc_parser(__doc__)
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
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    add_cfg_options(parser)
    return run_main(measure, parser.parse_args(argv))


def measure(args: argparse.Namespace) -> None:
    import torch

    from mambaout_dense.analysis import erf
    from mambaout_dense.cli import check_device, load_backbone
    from mambaout_dense.errors import UsageError
    device = check_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model, cfg, name = load_backbone(args.config, args.cfg_options, all_stages=True)
    if args.from_dataset and cfg is None:
        raise UsageError('--from-dataset needs a config file')
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
    result = erf.run_erf(model.to(device), images.to(device), args.out, args.name or name,
                         batch_size=args.batch_size, progress=True, extra=extra)
    print(erf.erf_markdown(result['rows']))
    print('\nwrote ' + ', '.join(result['files']))


if __name__ == '__main__':
    sys.exit(main())
