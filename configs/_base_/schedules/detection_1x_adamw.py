# Mask R-CNN 1x: 12 epochs, LR steps at epochs 8 and 11, 1000-iteration linear warm-up.
# AdamW lr 1e-4, weight decay 0.05, no decay on norms (MambaOut paper; Swin/ConvNeXt recipe).
# The LR is for a total batch of 16 = 8 GPUs x 2 images; --auto-scale-lr rescales it.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[8, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    type='OptimWrapper',
    # merges mmengine's one-group-per-parameter so foreach kernels apply (much faster on CPU)
    constructor='mambaout_dense.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(_delete_=True, type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05,
                   foreach=True),  # the per-tensor loop is ~50x slower on CPU
    paramwise_cfg=dict(norm_decay_mult=0.0, bypass_duplicate=True,
                       custom_keys={'norm': dict(decay_mult=0.0)}))
auto_scale_lr = dict(enable=False, base_batch_size=16)  # 16 = 8 GPUs x 2 images
