"""mmdet's ``SingleRoIExtractor`` with the parallel CPU RoIAlign of
:mod:`mambaout_dense.ops.roi_align` (He et al., "Mask R-CNN", arXiv 1703.06870).

mmdet builds RoI layers from ``mmcv.ops`` by name only. This subclass also accepts
``roi_layer=dict(type='mambaout_dense.RoIAlign', ...)`` (same arguments as mmcv's ``RoIAlign``)
and falls back to mmdet's behaviour for every other type. Config::

    custom_imports = dict(imports=[..., 'mambaout_dense.adapters.roi_extractor'])
    model = dict(roi_head=dict(bbox_roi_extractor=dict(
        type='mambaout_dense.SingleRoIExtractor',
        roi_layer=dict(type='mambaout_dense.RoIAlign', output_size=7, sampling_ratio=0))))

Imports mmdet.
"""
from typing import List

from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor as MMDetSingleRoIExtractor
from torch import nn

from ..ops.roi_align import RoIAlign
from ..registry import MODELS

__all__ = ['SingleRoIExtractor', 'ROI_LAYERS']

#: ``roi_layer`` types this extractor builds itself.
ROI_LAYERS = {'mambaout_dense.RoIAlign': RoIAlign}


@MODELS.register_module()
class SingleRoIExtractor(MMDetSingleRoIExtractor):
    """``mmdet.models.SingleRoIExtractor`` that also builds ``mambaout_dense.RoIAlign`` layers.

    Args: as mmdet's ``SingleRoIExtractor`` (``roi_layer``, ``out_channels``,
        ``featmap_strides``, ``finest_scale``, ``init_cfg``).
    """

    def build_roi_layers(self, layer_cfg: dict, featmap_strides: List[int]) -> nn.ModuleList:
        """One RoI layer per feature level (``spatial_scale = 1 / stride``)."""
        cfg = dict(layer_cfg)
        layer_type = cfg.get('type')
        if isinstance(layer_type, str) and layer_type in ROI_LAYERS:
            cfg.pop('type')
            return nn.ModuleList([ROI_LAYERS[layer_type](spatial_scale=1 / s, **cfg)
                                  for s in featmap_strides])
        return super().build_roi_layers(layer_cfg, featmap_strides)
