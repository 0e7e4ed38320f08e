"""An ADE20K semantic-segmentation dataset (mmseg) that validates its inputs.

mmseg's ``ADE20KDataset`` takes label maps at face value: a value outside the class range reaches
the cross-entropy as an out-of-bounds target. :class:`CheckedADE20KDataset` raises
:class:`~mambaout_dense.errors.DataError` naming the file for missing folders, images without a
label map, image/label size mismatches, label maps with several channels and label values outside
the class range (values are read eagerly with ``validate_labels=True``; every sample is also
checked after its pipeline), and wraps loading errors of a sample (an empty, truncated or
undecodable image) into a ``DataError`` that names the file.

Imports mmseg; a config loads it with ``custom_imports`` (``mambaout_dense.datasets.checked_ade``)
and names it ``type='mambaout_dense.CheckedADE20KDataset'``.
"""
import os.path as osp
from typing import Any, List

import numpy as np
from mmseg.datasets import ADE20KDataset

from ..errors import DataError
from ..registry import DATASETS
from .checks import (
    LOADING_ERRORS,
    check_image_size,
    find_transform,
    image_size_as_loaded,
    loader_applies_exif,
    missing_files_message,
    wrap_loading_error,
)

__all__ = ['CheckedADE20KDataset']


@DATASETS.register_module()
class CheckedADE20KDataset(ADE20KDataset):
    """mmseg's ``ADE20KDataset`` with load-time validation of folders, sizes and labels.

    Valid raw label values are ``0..K`` (``reduce_zero_label=True``; 0 is ignored) or
    ``0..K-1`` (otherwise), plus 255 (ignored), where ``K`` is the number of classes the PNG
    ids refer to: the 150 ADE20K classes when ``metainfo`` selects a subset (``label_map``), else
    ``len(classes)``.

    Args:
        validate_labels (bool): Read every label map at load time and check its values
            (about 1 ms per 256x256 PNG). Defaults to True. Without it, values are still
            checked per sample after the pipeline, with less precise messages.
        *args, **kwargs: As for ``mmseg.datasets.ADE20KDataset``.
    """

    def __init__(self, *args, validate_labels: bool = True, **kwargs) -> None:
        self.validate_labels = validate_labels
        super().__init__(*args, **kwargs)

    def _num_label_ids(self) -> int:
        return len(self.label_map) if self.label_map else len(self.metainfo['classes'])

    def load_data_list(self) -> List[dict]:
        """List image/label pairs as mmseg does, then validate them."""
        img_dir = self.data_prefix.get('img_path', None)
        ann_dir = self.data_prefix.get('seg_map_path', None)
        missing = [f'{what} {d!r}' for what, d in (('image folder', img_dir),
                                                    ('label folder', ann_dir))
                   if d and not osp.isdir(d)]
        if self.ann_file and not osp.isfile(self.ann_file):
            missing.append(f'split file {self.ann_file!r}')
        if missing:
            raise DataError('missing ' + ', '.join(missing))
        data_list = super().load_data_list()
        if not data_list:
            raise DataError(f'no *{self.img_suffix} image in {img_dir!r}')
        if ann_dir is None:
            return data_list
        no_label = [d['seg_map_path'] for d in data_list if not osp.isfile(d['seg_map_path'])]
        if no_label:
            raise DataError(missing_files_message('label map(s)', no_label))
        applies_exif = loader_applies_exif(self.pipeline)
        for info in data_list:
            label_size = image_size_as_loaded(info['seg_map_path'], False)
            check_image_size(info['img_path'], label_size, applies_exif,
                             f'its label map {info["seg_map_path"]!r}')
            if self.validate_labels:
                self._check_label_file(info['seg_map_path'])
        return data_list

    def _check_label_file(self, path: str) -> None:
        import mmcv
        loader = find_transform(self.pipeline, 'LoadAnnotations')
        backend = getattr(loader, 'imdecode_backend', 'pillow')
        with open(path, 'rb') as f:
            label = mmcv.imfrombytes(f.read(), flag='unchanged', backend=backend)
        if label is None:
            raise DataError(f'cannot decode label map {path!r}')
        label = label.squeeze()
        if label.ndim != 2:
            raise DataError(f'label map {path!r} has shape {label.shape}: expected one channel of '
                            'class ids (a colour or palette PNG read as colour?)')
        values = np.unique(label)
        top = self._num_label_ids() + (1 if self.reduce_zero_label else 0)
        bad = [int(v) for v in values if v >= top and v != 255]
        if bad:
            zero = ', 0 = ignored' if self.reduce_zero_label else ''
            raise DataError(f'label map {path!r} holds value(s) {bad[:10]} outside the valid '
                            f'ids 0..{top - 1} and 255 ({self._num_label_ids()} classes{zero}, '
                            '255 = ignored)')

    def prepare_data(self, idx: int) -> Any:
        """Run the pipeline; name the files when loading fails or labels are out of range."""
        info = self.get_data_info(idx)
        try:
            results = super().prepare_data(idx)
        except DataError:
            raise
        except LOADING_ERRORS as err:
            raise wrap_loading_error(err, info) from err
        sample = results.get('data_samples') if isinstance(results, dict) else None
        gt = getattr(sample, 'gt_sem_seg', None) if sample is not None else None
        if gt is not None:
            data = gt.data
            bad = data[(data >= len(self.metainfo['classes'])) & (data != self.ignore_index)]
            if bad.numel():
                raise DataError(f'label map {info.get("seg_map_path")!r}: value(s) '
                                f'{sorted(set(bad.unique().tolist()))[:10]} after the pipeline '
                                f'are outside 0..{len(self.metainfo["classes"]) - 1} '
                                f'(ignore index {self.ignore_index})')
        return results
