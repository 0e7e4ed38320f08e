# Shared by every config of this repo (fail loudly if an import is missing):
#   mambaout_dense.models   registers the backbones (type='mambaout_dense.MambaOut', ...)
#   mambaout_dense.engine   registers the hooks and the optimizer-wrapper constructor
#   mambaout_dense.safe_io  switches mmengine to safe checkpoint reading (weights_only) and
#                           atomic checkpoint writes, also under mmdet's/mmseg's own tools
# Configs that use a validating dataset or metric add its module (checked_coco, coco_metric,
# checked_ade) to this list.
custom_imports = dict(
    imports=['mambaout_dense.models', 'mambaout_dense.engine', 'mambaout_dense.safe_io'],
    allow_failed_imports=False)
# keep checkpoints loadable with torch.load(weights_only=True)
custom_hooks = [dict(type='mambaout_dense.PlainCheckpointHook')]
