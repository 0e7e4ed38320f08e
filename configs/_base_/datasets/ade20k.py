# ADE20K (SceneParse150) in the standard layout:
#   data/ade/ADEChallengeData2016/{images,annotations}/{training,validation}/
# Inherited unchanged from mmseg: 512x512 crops, batch 4 per GPU in mmseg's base (set to 2
# below by each UperNet config), and the multi-scale + flip tta_pipeline (ratios 0.5-1.75).
_base_ = 'mmseg::_base_/datasets/ade20k.py'
