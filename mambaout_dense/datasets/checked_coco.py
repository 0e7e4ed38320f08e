"""A COCO instance-segmentation dataset (mmdet) that validates its inputs.

mmdet's ``CocoDataset`` drops some bad annotations silently (unknown categories, empty boxes),
asserts on others (duplicate ids) and passes the rest (degenerate polygons, a missing image) on to
fail deep inside a transform or a loss. :class:`CheckedCocoDataset` checks at load time: a
malformed or unreadable annotation file, images missing on disk, empty or unreadable image files,
images whose size (after EXIF rotation, where the loader applies it) differs from the
annotation file, and images whose EXIF orientation the size cannot confirm (mirrored, turned
180 degrees, square) raise :class:`~mambaout_dense.errors.DataError`. Annotations with unknown
image or category ids, duplicate ids, malformed or non-positive boxes, boxes outside the image,
degenerate polygons (< 3 points) or missing masks are skipped with ONE warning per kind that
counts them (``skip_counts`` keeps the numbers; :mod:`mambaout_dense.datasets.coco_json` does the
cleaning).
In training, images left without annotations are dropped (``filter_cfg.filter_empty_gt``); in
evaluation they are kept. Loading errors of a sample name the file.

Imports mmdet; a config loads it with ``custom_imports`` (``mambaout_dense.datasets.checked_coco``)
and names it ``type='mambaout_dense.CheckedCocoDataset'``.
"""
import os.path as osp
from typing import Any, Dict, List

from mmdet.datasets import CocoDataset
from mmengine.logging import print_log

from ..errors import DataError
from ..registry import DATASETS
from .checks import (
    LOADING_ERRORS,
    check_image_size,
    find_transform,
    loader_applies_exif,
    missing_files_message,
    wrap_loading_error,
)
from .coco_json import clean_coco, coco_api_from_dict, read_coco_json

__all__ = ['CheckedCocoDataset']


@DATASETS.register_module()
class CheckedCocoDataset(CocoDataset):
    """mmdet's ``CocoDataset`` with load-time validation and counted skips.

    Args:
        validate_images (bool): Read every image header at load time: empty or unreadable
            files and sizes that differ from the annotation file raise :class:`DataError`.
            Defaults to True. (Existence is always checked.)
        *args, **kwargs: As for ``mmdet.datasets.CocoDataset``.

    Attributes:
        skip_counts (dict[str, int]): Skipped annotations per kind.
        empty_images_skipped (int): Training images dropped for having no annotation left.
    """

    def __init__(self, *args, validate_images: bool = True, **kwargs) -> None:
        self.validate_images = validate_images
        self.skip_counts: Dict[str, int] = {}
        self.empty_images_skipped = 0
        super().__init__(*args, **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read, validate and clean the annotation file, then parse it as mmdet does."""
        content = read_coco_json(self.ann_file)
        loader = find_transform(self.pipeline, 'LoadAnnotations')
        need_masks = bool(getattr(loader, 'with_mask', False))
        cleaned, report = clean_coco(content, self.ann_file, need_masks=need_masks)
        report.log()
        self.skip_counts = dict(report.counts)
        self._check_image_files(cleaned['images'])

        self.coco = coco_api_from_dict(cleaned, self.COCOAPI)
        self.cat_ids = self.coco.get_cat_ids(cat_names=self.metainfo['classes'])
        self.cat2label = {cat_id: i for i, cat_id in enumerate(self.cat_ids)}
        self.cat_img_map = dict(self.coco.cat_img_map)
        data_list = []
        for img_id in self.coco.get_img_ids():
            raw_img_info = self.coco.load_imgs([img_id])[0]
            raw_img_info['img_id'] = img_id
            raw_ann_info = self.coco.load_anns(self.coco.get_ann_ids(img_ids=[img_id]))
            data_list.append(self.parse_data_info(dict(raw_ann_info=raw_ann_info,
                                                       raw_img_info=raw_img_info)))
        del self.coco
        return data_list

    def _check_image_files(self, images: List[dict]) -> None:
        prefix = self.data_prefix.get('img', '') or ''
        missing = [osp.join(prefix, img['file_name']) for img in images
                   if not osp.isfile(osp.join(prefix, img['file_name']))]
        if missing:
            raise DataError(missing_files_message(f'image(s) listed in {self.ann_file!r} are',
                                                  missing))
        if not self.validate_images:
            return
        applies_exif = loader_applies_exif(self.pipeline)
        for img in images:
            check_image_size(osp.join(prefix, img['file_name']), (img['width'], img['height']),
                             applies_exif, repr(self.ann_file))

    def filter_data(self) -> List[dict]:
        """In training, drop images without annotations (``filter_empty_gt``) and small ones."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty = self.filter_cfg.get('filter_empty_gt', False)
        min_size = self.filter_cfg.get('min_size', 0)
        kept = [d for d in self.data_list if (d['instances'] or not filter_empty)
                and min(d['width'], d['height']) >= min_size]
        self.empty_images_skipped = sum(1 for d in self.data_list if not d['instances'])
        if len(kept) < len(self.data_list):
            print_log(f'{self.ann_file}: training on {len(kept)} of {len(self.data_list)} images '
                      f'({self.empty_images_skipped} without annotations'
                      f'{", smaller than min_size " + str(min_size) if min_size else ""} '
                      'skipped)', logger='current')
        if not kept:
            raise DataError(f'{self.ann_file!r}: no training image has a usable annotation')
        return kept

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline; a failure to load the image names the file."""
        try:
            return super().prepare_data(idx)
        except DataError:
            raise
        except LOADING_ERRORS as err:
            raise wrap_loading_error(err, self.get_data_info(idx)) from err
