# UperNet on the cue-distance task of the long-range probe (mambaout_dense.datasets.synthetic.
# longrange): the pixels of a grey target take the colour (red/blue) of a marker exactly d
# stride-4 tokens away; every other pixel is unlabelled. The second arm of
# tools/analysis/longrange_experiment.py (--arm upernet), which writes one set per (size, d),
# sets data_root and max_iters, and reads aAcc (= accuracy on the target pixels, chance 50%).
# Femto-sized backbones of matched parameter count, from scratch. This file uses
# MambaOut-Femto; upernet_longrange_{vmamba,hybrid}_femto.py swap the backbone.
#   python tools/analysis/longrange_experiment.py --arm upernet --iters 2000 --device cuda
_base_ = [
    './_base_/models/upernet_mambaout.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
size = 128  # image side of the generated set: a 32x32 grid of stride-4 tokens
crop_size = (size, size)
data_root = 'data/synthetic_longrange/g32_d16'
metainfo = dict(classes=('red', 'blue'),  # PNG 1..2; 0 = every pixel outside the target, ignored
                palette=[[230, 25, 25], [25, 64, 230]])
norm_cfg = dict(type='BN', requires_grad=True)  # one CPU process: no SyncBN
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='femto',  # depths (3, 3, 9, 3), dims (48, 96, 192, 288): 5.82 M
        drop_path_rate=0.1,
        init_cfg=None),  # from scratch: there is no ImageNet hybrid, so no backbone gets one
    decode_head=dict(
        in_channels=[48, 96, 192, 288],  # = backbone out_channels
        # No pyramid pooling: its global average pool would hand the marker's colour to every
        # pixel through the head, whatever the backbone. The rest of the head is 3x3 convs (local),
        # so long-range information must come through the backbone.
        pool_scales=(),
        channels=128,  # 512 in the ADE20K recipe; small for a CPU
        num_classes=2,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         avg_non_ignore=True)),
    auxiliary_head=dict(
        in_channels=192,  # stage-3 width
        channels=64,
        num_classes=2,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                         avg_non_ignore=True)))

# Full images, no crop or rescale: a crop could cut the marker off. A flip moves the marker and
# the target together and keeps their distance.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackSegInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs'),
]
dataset = dict(type='BaseSegDataset', data_root=data_root, metainfo=metainfo,
               img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True)
train_dataloader = dict(
    batch_size=4,  # one CPU process
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(**dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=1,
    num_workers=2,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='IoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator

# Schedule: the driver replaces max_iters (and the iteration numbers below) from --iters.
max_iters = 1000
warmup_iters = 50
optim_wrapper = dict(
    type='OptimWrapper',
    # merges mmengine's one-group-per-parameter so foreach kernels apply (much faster on CPU)
    constructor='mambaout_dense.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                   foreach=True),  # from scratch: lr 1e-3; foreach: the loop is slow on CPU
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=warmup_iters, end=max_iters,
         by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters,
                    max_keep_ckpts=1),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
