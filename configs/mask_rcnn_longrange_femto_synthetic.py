# Mask R-CNN on the long-range task (mambaout_dense.datasets.synthetic.longrange_dense), the same
# scenes as the UperNet arm in COCO format: each grey target is an instance whose class is its
# marker's colour (red / blue, 2 classes); markers are not instances. A target looks the same
# whatever its class and the RoI head sees only the features pooled inside its box, so the
# backbone and the FPN must carry the cue from the marker, d scene tokens away. Each set mixes a
# near group (the local control, d = 3) with a far group; GroupedCocoMetric reports AP, recall and
# colour accuracy per group (near_bbox_mAP, far_colour_acc, ...). The arm of
# tools/analysis/longrange_experiment.py (--arm maskrcnn) writes the set and sets data_root and
# the schedule. From scratch, Femto-sized backbones of matched parameter count; this file uses
# MambaOut-Femto, mask_rcnn_longrange_{vmamba,hybrid}_femto.py swap the backbone.
#   python tools/analysis/longrange_experiment.py --arm maskrcnn
_base_ = [
    './_base_/models/mask_rcnn_mambaout.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
custom_imports = dict(imports=[
    'mambaout_dense.models', 'mambaout_dense.engine', 'mambaout_dense.safe_io',
    'mambaout_dense.datasets.checked_coco', 'mambaout_dense.evaluation.grouped_coco_metric',
    'mambaout_dense.adapters.roi_extractor'
], allow_failed_imports=False)
roi_extractor = 'mambaout_dense.SingleRoIExtractor'  # parallel CPU RoIAlign, as the main job
roi_align = 'mambaout_dense.RoIAlign'
classes = ('red', 'blue')
metainfo = dict(classes=classes, palette=[(230, 25, 25), (25, 64, 230)])
data_root = 'data/synthetic_longrange/s128/'
fpn_channels = 64  # slim FPN and heads for this arm (256 in the COCO recipe): CPU-sized

model = dict(
    backbone=dict(arch='femto', drop_path_rate=0.1, init_cfg=None),  # from scratch
    neck=dict(in_channels=[48, 96, 192, 288], out_channels=fpn_channels),  # = backbone widths
    rpn_head=dict(
        in_channels=fpn_channels, feat_channels=fpn_channels,
        # targets are squares of 3 scene tokens: 12 px at 128 px, 24 px at 256 px; anchors
        # 3 x stride = 12, 24, 48, ... px, square only
        anchor_generator=dict(scales=[3], ratios=[1.0])),
    roi_head=dict(
        bbox_roi_extractor=dict(type=roi_extractor, out_channels=fpn_channels,
                                roi_layer=dict(type=roi_align)),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=256,
                       num_classes=len(classes)),
        mask_roi_extractor=dict(type=roi_extractor, out_channels=fpn_channels,
                                roi_layer=dict(type=roi_align)),
        mask_head=dict(in_channels=fpn_channels, conv_out_channels=32, num_convs=2,
                       num_classes=len(classes))),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=100),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(
        rpn=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(max_per_img=10)))  # 2 targets per image

# No resize (the driver writes each size), no crop (it could cut a marker off); a flip keeps
# every distance.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale_factor=1.0),  # identity: records the scale_factor the heads read
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,  # 2-core CPU
    persistent_workers=False,
    sampler=dict(type='InfiniteSampler', shuffle=True),  # near and far images mixed
    dataset=dict(
        type='mambaout_dense.CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_training.json',
        data_prefix=dict(img='images/training/'),
        filter_cfg=dict(filter_empty_gt=True),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mambaout_dense.CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_validation.json',
        data_prefix=dict(img='images/validation/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='mambaout_dense.GroupedCocoMetric',  # AP, recall, colour accuracy per distance group
    ann_file=data_root + 'annotations/instances_validation.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

# Schedule: the driver replaces the iteration numbers from --iters and --curve-points; the
# recipe of the UperNet arm (AdamW, 10% linear warm-up, cosine to 0).
max_iters = 1000
warmup_iters = 100
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters // 4)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    constructor='mambaout_dense.MergedGroupsOptimWrapperConstructor',
    # lr 2e-4: the UperNet arm's, tuned on seed 100 (docs/longrange_dense.md)
    optimizer=dict(type='AdamW', lr=2e-4, betas=(0.9, 0.999), weight_decay=0.05, foreach=True),
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'norm': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=warmup_iters),
    dict(type='CosineAnnealingLR', T_max=max_iters - warmup_iters, eta_min=0.0,
         begin=warmup_iters, end=max_iters, by_epoch=False),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=10, log_metric_by_epoch=False),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=max_iters, max_keep_ckpts=1),
    visualization=dict(type='DetVisualizationHook'))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=8)
