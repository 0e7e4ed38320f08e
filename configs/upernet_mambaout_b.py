# UperNet 160k with MambaOut-Base; recipe of upernet_mambaout_t.py.
# Total batch 16 = 8 GPUs x 2 images.
_base_ = './upernet_mambaout_t.py'
model = dict(
    backbone=dict(
        arch='base',
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint='https://github.com/yuweihao/MambaOut/releases/download/model/'
                      'mambaout_base.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 768]),  # = backbone out_channels
    auxiliary_head=dict(in_channels=512))
