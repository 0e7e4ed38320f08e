"""Parameters and FLOPs of a whole detector or segmentor at a fixed input.

Convention (as the MambaOut and VMamba papers, and mmengine's analysis): one multiply-add is one
FLOP. The selective scan is a single autograd op that mmengine would count as 0; its handle from
:mod:`mambaout_dense.ops.flops` (9·B·L·D·N + B·D·L) is registered when the ops package provides
one. Data movement (cross-scan permutations, flips, concatenations) counts 0.
"""
from typing import Any, Dict, Optional, Tuple

import torch
from mmengine.config import Config

from ..builder import build_model

__all__ = ['model_complexity', 'module_flops', 'DEFAULT_SHAPES']

#: Default (H, W) per task: detection (3, 1280, 800), segmentation (3, 512, 2048).
DEFAULT_SHAPES = {'mmdet': (1280, 800), 'mmseg': (512, 2048)}


def _data_samples(scope: str, shape: Tuple[int, int]) -> list:
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), batch_input_shape=(h, w),
                scale_factor=(1.0, 1.0), flip=False, flip_direction=None)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample
        sample = DetDataSample()
    else:
        from mmseg.structures import SegDataSample
        sample = SegDataSample()
    sample.set_metainfo(meta)
    return [sample]


class _TensorForward(torch.nn.Module):
    """Wrap ``model._forward(inputs, data_samples)`` so that tracing sees one tensor input."""

    def __init__(self, model: torch.nn.Module, data_samples: list) -> None:
        super().__init__()
        self.model = model
        self.data_samples = data_samples

    def forward(self, inputs: torch.Tensor) -> Any:
        return self.model._forward(inputs, self.data_samples)


def model_complexity(cfg: Config, shape: Optional[Tuple[int, int]] = None,
                     seed: int = 0) -> Dict[str, Any]:
    """Count parameters and FLOPs of the config's model for one (3, H, W) input.

    Args:
        cfg (Config): A detection or segmentation config.
        shape (tuple[int, int], optional): (H, W). Defaults to :data:`DEFAULT_SHAPES`.
        seed (int): Seed of the random weights and input (the detector's proposal count, and so
            its RoI-head FLOPs, depends on them). Defaults to 0.

    Returns:
        dict: ``params`` and ``flops`` (ints), ``backbone_params``, ``backbone_flops``,
        ``shape``, ``scope``, and ``by_module`` (FLOPs of the top-level modules).
    """
    from mmengine.analysis import FlopAnalyzer, parameter_count
    scope = cfg.get('default_scope')
    shape = tuple(shape or DEFAULT_SHAPES[scope])
    torch.manual_seed(seed)
    model = build_model(cfg).eval()
    inputs = torch.randn(1, 3, *shape)
    wrapped = _TensorForward(model, _data_samples(scope, shape)).eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(wrapped, (inputs, ))
        _register_extra_handles(analyzer)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        flops = analyzer.total()
        by_module = {k[len('model.'):]: v for k, v in analyzer.by_module().items()
                     if k.count('.') == 1 and k.startswith('model.')}
    params = parameter_count(model)
    return dict(scope=scope, shape=shape, params=int(params['']), flops=int(flops),
                backbone_params=int(params.get('backbone', 0)),
                backbone_flops=int(by_module.get('backbone', 0)), by_module=by_module)


def module_flops(module: torch.nn.Module, *inputs: torch.Tensor) -> int:
    """FLOPs (multiply-adds) of one forward call of any module, the selective scan included.

    Args:
        module (nn.Module): The module (run in eval mode, without gradients).
        *inputs (Tensor): Its positional inputs.

    Returns:
        int: Multiply-adds.
    """
    from mmengine.analysis import FlopAnalyzer
    was_training = module.training
    module.eval()
    with torch.no_grad():
        analyzer = FlopAnalyzer(module, inputs)
        _register_extra_handles(analyzer)
        analyzer.unsupported_ops_warnings(False)
        analyzer.uncalled_modules_warnings(False)
        analyzer.tracer_warnings('none')
        total = int(analyzer.total())
    module.train(was_training)
    return total


def _register_extra_handles(analyzer) -> None:
    try:
        from ..ops.flops import register_flop_handles
    except ImportError:  # ops package not present in this checkout
        return
    register_flop_handles(analyzer)
