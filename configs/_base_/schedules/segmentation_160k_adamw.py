# UperNet 160k iterations: AdamW lr 1e-4, weight decay 0.05, no decay on norms, no layer-wise
# LR decay (MambaOut author's note), 1500-iteration linear warm-up then poly decay (power 1).
# The LR is for a total batch of 16 = 8 GPUs x 2 images.
_base_ = 'mmseg::_base_/schedules/schedule_160k.py'
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    # merges mmengine's one-group-per-parameter so foreach kernels apply (much faster on CPU)
    constructor='mambaout_dense.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05,
                   foreach=True),  # the per-tensor loop is ~50x slower on CPU
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
auto_scale_lr = dict(enable=False, base_batch_size=16)  # 16 = 8 GPUs x 2 images
