# UperNet 160k with VMamba-B (v2, s2l15); recipe of upernet_vmamba_t.py.
# Total batch 16 = 8 GPUs x 2 images.
_base_ = './upernet_vmamba_t.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint='https://github.com/MzeroMiko/VMamba/releases/download/%23v2cls/'
                      'vssm_base_0229_ckpt_epoch_237.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),  # = backbone out_channels
    auxiliary_head=dict(in_channels=512))
