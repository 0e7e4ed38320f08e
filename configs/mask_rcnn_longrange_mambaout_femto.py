# Long-range task, Mask R-CNN arm, MambaOut-Femto (Gated CNN in every stage): 5.82 M backbone
# parameters. The base config already uses it; this file names the run like its two siblings.
_base_ = './mask_rcnn_longrange_femto_synthetic.py'
