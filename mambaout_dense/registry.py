"""Scoped child registries of mambaout_dense.

Every registry here is a child of mmengine's root registry of the same kind, with scope
``mambaout_dense``. A config that runs under mmdet's or mmseg's default scope can therefore say
``type='mambaout_dense.MambaOut'`` and mmengine finds the class by searching the root's children,
as long as ``mambaout_dense`` has been imported (the configs do that with ``custom_imports``;
``tools/*.py`` import it directly).
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import METRICS as MMENGINE_METRICS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS as MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.registry import TRANSFORMS as MMENGINE_TRANSFORMS
from mmengine.registry import Registry

SCOPE = 'mambaout_dense'

#: Backbones and other modules.
MODELS = Registry('model', parent=MMENGINE_MODELS, scope=SCOPE,
                  locations=['mambaout_dense.models'])
#: Training hooks (checkpoint safety, divergence guard).
HOOKS = Registry('hook', parent=MMENGINE_HOOKS, scope=SCOPE,
                 locations=['mambaout_dense.engine'])
#: Dataset adapters that validate their inputs.
DATASETS = Registry('dataset', parent=MMENGINE_DATASETS, scope=SCOPE,
                    locations=['mambaout_dense.datasets'])
#: Data transforms.
TRANSFORMS = Registry('transform', parent=MMENGINE_TRANSFORMS, scope=SCOPE,
                      locations=['mambaout_dense.datasets'])
#: Evaluation metrics.
METRICS = Registry('metric', parent=MMENGINE_METRICS, scope=SCOPE,
                   locations=['mambaout_dense.evaluation'])
#: Optimizer wrapper constructors.
OPTIM_WRAPPER_CONSTRUCTORS = Registry('optimizer wrapper constructor',
                                      parent=MMENGINE_OPTIM_WRAPPER_CONSTRUCTORS, scope=SCOPE,
                                      locations=['mambaout_dense.engine'])
