"""Adapters that plug this package's ops into mmdet/mmseg modules.

Each module here subclasses a class of one task package and imports it, so this package imports
none of them: a config loads the one it uses with ``custom_imports``, e.g.
``'mambaout_dense.adapters.roi_extractor'`` (mmdet).
"""
