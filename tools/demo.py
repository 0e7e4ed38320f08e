#!/usr/bin/env python
"""Draw the predictions of a detector or segmentor on one image.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out out.png [--score-thr 0.3] [--device cpu]
"""
import argparse
import os.path as osp
import sys

from mambaout_dense.cli import add_cfg_options, run_main


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--device', default='cpu', help="'cpu', 'cuda' or 'cuda:N'")
    add_cfg_options(parser)
    return run_main(demo, parser.parse_args(argv))


def demo(args: argparse.Namespace) -> None:
    import cv2
    import mmcv

    import mambaout_dense.safe_io  # noqa: F401  (safe checkpoint reads)
    from mambaout_dense.checkpoint import check_state_dict, extract_state_dict, safe_load
    from mambaout_dense.cli import check_device, prepare_config
    from mambaout_dense.errors import UsageError
    device = check_device(args.device)
    if not osp.isfile(args.image):
        raise UsageError(f'image not found: {args.image!r}')
    try:  # OpenCV raises on empty files and on files it cannot decode as RGB
        image = mmcv.imread(args.image, channel_order='rgb')
    except cv2.error:
        image = None
    if image is None:
        raise UsageError(f'cannot decode image: {args.image!r}')
    cfg = prepare_config(args)
    scope = cfg.default_scope
    checkpoint = safe_load(args.checkpoint)  # refuse unsafe, corrupt or non-finite files first
    cfg.model.get('backbone', {}).pop('init_cfg', None)  # weights come from the checkpoint
    if scope == 'mmdet':
        from mmdet.apis import inference_detector as inference
        from mmdet.apis import init_detector as init
        from mmdet.registry import VISUALIZERS
    else:
        from mmseg.apis import inference_model as inference
        from mmseg.apis import init_model as init
        from mmseg.registry import VISUALIZERS
    model = init(cfg, args.checkpoint, device=str(device))
    # the loaders above skip tensors of another shape with a warning only
    check_state_dict(model.state_dict(), extract_state_dict(checkpoint, args.checkpoint),
                     f'checkpoint {args.checkpoint!r}', hint='It is for another architecture '
                     'or size.')
    result = inference(model, args.image)
    # no vis backend: the image is written to --out directly (a backend would want a save_dir)
    visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=None))
    visualizer.dataset_meta = model.dataset_meta
    kwargs = dict(pred_score_thr=args.score_thr) if scope == 'mmdet' else dict(with_labels=True)
    visualizer.add_datasample('demo', image, data_sample=result, draw_gt=False, show=False,
                              out_file=args.out, **kwargs)
    print(f'wrote {args.out}')


if __name__ == '__main__':
    sys.exit(main())
