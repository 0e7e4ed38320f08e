# UperNet on the long-range task (mambaout_dense.datasets.synthetic.longrange_dense): two
# target-marker pairs per image, one red and one blue marker; the pixels of each grey target take
# the colour of their own marker, exactly d scene tokens away; every other pixel is unlabelled.
# Each set mixes a near group (the local control, d = 3) with a far group, in training and in
# validation, and GroupedPixelMetric scores the labelled pixels of each group apart (near_acc,
# far_acc, near_mIoU, ...). The arm of tools/analysis/longrange_experiment.py (--arm upernet)
# writes the set and sets data_root, the size and the schedule. Femto-sized backbones of matched
# parameter count, from scratch. This file uses MambaOut-Femto;
# upernet_longrange_{vmamba,hybrid}_femto.py swap the backbone.
#   python tools/analysis/longrange_experiment.py --arm upernet
_base_ = [
    './_base_/models/upernet_mambaout.py',
    'mmseg::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
custom_imports = dict(imports=[
    'mambaout_dense.models', 'mambaout_dense.engine', 'mambaout_dense.safe_io',
    'mambaout_dense.evaluation.grouped_seg_metric'
], allow_failed_imports=False)
size = 128  # image side: the driver's --sizes replace it (model.data_preprocessor.size)
crop_size = (size, size)
data_root = 'data/synthetic_longrange/s128'
metainfo = dict(classes=('red', 'blue'),  # PNG 1..2; 0 = every pixel outside the targets, ignored
                palette=[[230, 25, 25], [25, 64, 230]])
norm_cfg = dict(type='BN', requires_grad=True)  # one CPU process: no SyncBN
head_channels = 64  # slim head for this arm (512 in the ADE20K recipe): CPU-sized
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='femto',  # depths (3, 3, 9, 3), dims (48, 96, 192, 288): 5.82 M
        drop_path_rate=0.1,
        init_cfg=None),  # from scratch: there is no ImageNet hybrid, so no backbone gets one
    decode_head=dict(
        in_channels=[48, 96, 192, 288],  # = backbone out_channels
        # No pyramid pooling: its global average pool would hand the marker's colour to every
        # pixel through the head, whatever the backbone. The rest of the head is 1x1 and 3x3
        # convs (local) plus the FPN's upsampling, so long-range information must come
        # through the backbone.
        pool_scales=(),
        channels=head_channels,
        num_classes=2,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0,
                         avg_non_ignore=True)),
    auxiliary_head=dict(
        in_channels=192,  # stage-3 width
        channels=head_channels,
        num_classes=2,
        norm_cfg=norm_cfg,
        loss_decode=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=0.4,
                         avg_non_ignore=True)))

# Full images, no crop or rescale: a crop could cut a marker off. A flip moves the markers and
# the targets together and keeps their distances.
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
    batch_size=8,
    num_workers=0,  # 2-core CPU: loading 128-px files in the main process is cheaper
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),  # near and far images mixed
    dataset=dict(**dataset, pipeline=train_pipeline,
                 data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training')))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(**dataset, pipeline=test_pipeline,
                 data_prefix=dict(img_path='images/validation',
                                  seg_map_path='annotations/validation')))
test_dataloader = val_dataloader
val_evaluator = dict(type='mambaout_dense.GroupedPixelMetric', num_classes=2)
test_evaluator = val_evaluator

# Schedule: the driver replaces max_iters, val_interval and the scheduler's iteration numbers
# from --iters and --curve-points. The probe's recipe: AdamW, linear warm-up, cosine to 0.
max_iters = 1000
warmup_iters = 100  # 10% of max_iters, as the probe
optim_wrapper = dict(
    type='OptimWrapper',
    # merges mmengine's one-group-per-parameter so foreach kernels apply (much faster on CPU)
    constructor='mambaout_dense.MergedGroupsOptimWrapperConstructor',
    # lr 2e-4: tuned on seed 100 (docs/longrange_dense.md); at 1e-3 and 5e-4 the VMamba
    # backbone's loss spikes back to chance and it never learns the far cue. foreach: the loop
    # is slow on CPU.
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05,
                   foreach=True),
    paramwise_cfg=dict(custom_keys={'norm': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=5.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', T_max=max_iters - warmup_iters, eta_min=0.0,
         begin=warmup_iters, end=max_iters, by_epoch=False),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 4)
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
