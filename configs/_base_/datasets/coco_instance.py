# COCO 2017 instance segmentation in the standard layout:
#   data/coco/annotations/instances_{train,val}2017.json, data/coco/{train,val}2017/*.jpg
# Inherited unchanged from mmdet (short side 800, long side <= 1333, flip); batch 2 per GPU.
_base_ = 'mmdet::_base_/datasets/coco_instance.py'
