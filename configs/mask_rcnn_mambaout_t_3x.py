# Mask R-CNN 3x (36 epochs) multi-scale training with MambaOut-Tiny.
# Short side sampled from 480..800 (step 32), long side <= 1333, as mmdet's Swin/ConvNeXt 3x.
# Total batch 16 = 8 GPUs x 2 images.
_base_ = './mask_rcnn_mambaout_t.py'
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=None),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[[
            dict(type='RandomChoiceResize',
                 scales=[(1333, s) for s in range(480, 801, 32)], keep_ratio=True)
        ], [
            dict(type='RandomChoiceResize', scales=[(1333, 400), (1333, 500), (1333, 600)],
                 keep_ratio=True),
            dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                 allow_negative_crop=True),
            dict(type='RandomChoiceResize',
                 scales=[(1333, s) for s in range(480, 801, 32)], keep_ratio=True)
        ]]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]
