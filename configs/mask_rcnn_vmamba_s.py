# Mask R-CNN 1x with VMamba-S (v2, s2l15); recipe of mask_rcnn_vmamba_t.py.
# Total batch 16 = 8 GPUs x 2 images.
_base_ = './mask_rcnn_vmamba_t.py'
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
                      'vssm_small_0229_ckpt_epoch_222.pth')))
