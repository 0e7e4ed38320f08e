"""Parameters, FLOPs and CPU latency per image of the dense long-range arms' models.

One multiply-add is one FLOP (:mod:`mambaout_dense.analysis.flops`). Latency: one image, eval
mode, no gradients, the median of ``repeat`` timed calls after one warm-up, in this process's
thread count; the backbones of one size are timed in turns
(:func:`~mambaout_dense.analysis.measure.interleaved_median_seconds`).
"""
import os.path as osp
from typing import Any, Dict, List, Sequence

__all__ = ['measure_cost', 'config_dims']


def config_dims(config: str) -> List[int]:
    """Stage widths of a config's backbone (the neck's or decode head's ``in_channels``)."""
    from ...builder import load_config
    cfg = load_config(config)
    head = cfg.model.get('neck') or cfg.model.get('decode_head')
    return [int(c) for c in head['in_channels']]


def measure_cost(configs: Dict[str, str], sizes: Sequence[int], arm: str,
                 repeat: int = 3, latency: bool = True) -> List[Dict[str, Any]]:
    """Cost of each (backbone, size).

    Args:
        configs (dict[str, str]): Backbone name -> config path.
        sizes (Sequence[int]): Image sides.
        arm (str): 'upernet' or 'maskrcnn' (the segmentor's input size is set per size).
        repeat (int): Timed calls. Defaults to 3.
        latency (bool): Time the forward pass. Defaults to True.

    Returns:
        list[dict]: ``backbone``, ``size``, ``params``, ``backbone_params``, ``flops``,
        ``backbone_flops`` (per image) and ``latency_ms`` (per image; None without
        ``latency``).
    """
    import warnings

    import torch

    from ...builder import build_model, load_config
    # mmseg suggests one output channel for two classes; this arm keeps two, as the probe
    warnings.filterwarnings('ignore', message='For binary segmentation')
    from ..flops import _data_samples, _TensorForward, model_complexity
    from ..measure import interleaved_median_seconds
    rows = []
    for size in sizes:
        fns, found = {}, {}
        for name, path in configs.items():
            cfg = load_config(path)
            if arm == 'upernet':
                cfg.model.data_preprocessor.size = (size, size)
            res = model_complexity(cfg, (size, size))
            found[name] = dict(backbone=name, size=int(size), config=osp.basename(path),
                               params=res['params'], backbone_params=res['backbone_params'],
                               flops=res['flops'], backbone_flops=res['backbone_flops'],
                               latency_ms=None)
            if latency:
                torch.manual_seed(0)
                model = _TensorForward(build_model(cfg).eval(),
                                       _data_samples(cfg.default_scope, (size, size))).eval()
                x = torch.randn(1, 3, size, size)

                def fn(model=model):
                    with torch.no_grad():
                        model(x)
                fns[name] = fn
        if fns:
            times = interleaved_median_seconds(fns, 'cpu', warmup=1, repeat=repeat)
            for name, t in times.items():
                found[name]['latency_ms'] = 1000 * t
        rows += list(found.values())
    return rows
