# Main job on the embedded synthetic COCO-format set (tools/make_synthetic.py coco), CPU-sized:
# Mask R-CNN + FPN with MambaOut-Femto trained from scratch (no ImageNet weights offline),
# 320x320 images, 6 shape classes, COCO bbox + segm AP with mmdet's CocoMetric.
#   python tools/make_synthetic.py coco --out data/synthetic_coco --train 2000 --val 200 --size 320
#   python tools/train.py configs/mask_rcnn_mambaout_femto_synthetic.py
# The heads are slimmed (64-channel FPN, RPN and RoI heads, 512-d box head) to fit a 15-minute
# training budget on a CPU.
_base_ = [
    './_base_/models/mask_rcnn_mambaout.py',
    'mmdet::_base_/default_runtime.py',
    './_base_/default_runtime.py',
]
# base imports + the validating COCO dataset and metric and the RoI extractor with the parallel
# CPU RoIAlign (they import mmdet only)
custom_imports = dict(imports=[
    'mambaout_dense.models', 'mambaout_dense.engine', 'mambaout_dense.safe_io',
    'mambaout_dense.datasets.checked_coco', 'mambaout_dense.evaluation.coco_metric',
    'mambaout_dense.adapters.roi_extractor'
])
# CPU-sized setting: mmcv's CPU RoIAlign is single-threaded (and its backward recomputes the
# sampling weights per channel); mambaout_dense.RoIAlign gives the same values in parallel
# (torchvision's op on GPUs). Any Mask R-CNN config can opt in the same way.
roi_extractor = 'mambaout_dense.SingleRoIExtractor'
roi_align = 'mambaout_dense.RoIAlign'
classes = ('disc', 'square', 'triangle', 'star', 'ring', 'cross')  # = COCO_CLASSES
metainfo = dict(classes=classes)
num_classes = len(classes)
data_root = 'data/synthetic_coco/'
image_size = (256, 256)
# 64 channels (mmdet: 256): on held-out images it scored higher than 128 at equal iterations, at
# about 0.7x the time per iteration (the FPN's 3x3 output convs and the RPN conv at stride 4 were
# the costliest layers after the backbone; docs/main_job/sweep.md, round 2)
fpn_channels = 64

model = dict(
    backbone=dict(arch='femto', drop_path_rate=0.0),
    neck=dict(in_channels=[48, 96, 192, 288], out_channels=fpn_channels),  # = backbone out_channels
    # anchors 16-256 px (scale 4 at strides 4-64; mmdet's 8 gives 32-512): the objects are
    # 10-90 px at 256 (chosen by docs/main_job/sweep.md)
    rpn_head=dict(in_channels=fpn_channels, feat_channels=fpn_channels,
                  anchor_generator=dict(scales=[4])),
    roi_head=dict(
        bbox_roi_extractor=dict(type=roi_extractor, out_channels=fpn_channels,
                                roi_layer=dict(type=roi_align)),
        bbox_head=dict(in_channels=fpn_channels, fc_out_channels=512, num_classes=num_classes),
        mask_roi_extractor=dict(type=roi_extractor, out_channels=fpn_channels,
                                roi_layer=dict(type=roi_align)),
        mask_head=dict(in_channels=fpn_channels, conv_out_channels=64, num_convs=2,
                       num_classes=num_classes)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=1000, max_per_img=500),
        rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(
        rpn=dict(nms_pre=500, max_per_img=300),
        rcnn=dict(max_per_img=50)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# CheckedCocoDataset: mmdet's CocoDataset that reports bad files and counts skipped annotations
train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    batch_sampler=dict(type='AspectRatioBatchSampler'),
    dataset=dict(
        type='mambaout_dense.CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_train2017.json',
        data_prefix=dict(img='train2017/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=4),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=1,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mambaout_dense.CheckedCocoDataset',
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/instances_val2017.json',
        data_prefix=dict(img='val2017/'),
        test_mode=True,
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(
    type='mambaout_dense.CheckedCocoMetric',  # CocoMetric; ground truth checked like the dataset
    ann_file=data_root + 'annotations/instances_val2017.json',
    metric=['bbox', 'segm'],
    format_only=False)
test_evaluator = val_evaluator

# CPU schedule sized for about 14 training minutes on 2 idle cores: 1080 iterations x 4 images
# (the recipe and its learning rate chosen on held-out training images: docs/main_job/sweep.md).
max_iters = 1080
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(
    type='OptimWrapper',
    # merges mmengine's one-group-per-parameter so foreach kernels apply (much faster on CPU)
    constructor='mambaout_dense.MergedGroupsOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999), weight_decay=0.05,
                   foreach=True),  # the per-tensor loop is ~50x slower on CPU
    paramwise_cfg=dict(norm_decay_mult=0.0, custom_keys={'norm': dict(decay_mult=0.0)}),
    clip_grad=dict(max_norm=10.0, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='CosineAnnealingLR', T_max=max_iters - 100, eta_min=1e-5, by_epoch=False,
         begin=100, end=max_iters),
]
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=100, max_keep_ckpts=2))
log_processor = dict(by_epoch=False)
env_cfg = dict(cudnn_benchmark=False)
randomness = dict(seed=0)
auto_scale_lr = dict(enable=False, base_batch_size=4)
