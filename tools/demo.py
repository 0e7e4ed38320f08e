#!/usr/bin/env python
"""Draw the predictions of a detector or segmentor on one image.

    python tools/demo.py IMAGE CONFIG CHECKPOINT --out out.png [--score-thr 0.3] [--device cpu]
"""
import argparse
import os.path as osp
import sys


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('image')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--score-thr', type=float, default=0.3, help='detection score threshold')
    parser.add_argument('--device', default='cpu')
    args = parser.parse_args(argv)

    import mmcv

    from mambaout_dense.checkpoint import CheckpointError, safe_load
    from mambaout_dense.engine.launch import UsageError, init_task_scope, load_config
    try:
        if not osp.isfile(args.image):
            raise UsageError(f'image not found: {args.image!r}')
        image = mmcv.imread(args.image, channel_order='rgb')
        if image is None:
            raise UsageError(f'cannot decode image: {args.image!r}')
        cfg = load_config(args.config)
        scope = init_task_scope(cfg)
        safe_load(args.checkpoint)  # refuse unsafe/corrupt files before building anything
    except (UsageError, CheckpointError) as err:
        print(f'error: {err}', file=sys.stderr)
        return 2
    cfg.model.get('backbone', {}).pop('init_cfg', None)  # weights come from the checkpoint
    if scope == 'mmdet':
        from mmdet.apis import inference_detector, init_detector
        from mmdet.registry import VISUALIZERS
        model = init_detector(cfg, args.checkpoint, device=args.device)
        result = inference_detector(model, args.image)
    else:
        from mmseg.apis import inference_model, init_model
        from mmseg.registry import VISUALIZERS
        model = init_model(cfg, args.checkpoint, device=args.device)
        result = inference_model(model, args.image)
    visualizer = VISUALIZERS.build(model.cfg.visualizer)
    visualizer.dataset_meta = model.dataset_meta
    kwargs = dict(pred_score_thr=args.score_thr) if scope == 'mmdet' else dict(with_labels=True)
    visualizer.add_datasample('demo', image, data_sample=result, draw_gt=False, show=False,
                              out_file=args.out, **kwargs)
    print(f'wrote {args.out}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
