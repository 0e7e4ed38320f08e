"""Checks shared by the validating dataset adapters (COCO and ADE20K).

What mmcv's ``LoadImageFromFile`` does with unusual images (OpenCV 5, verified by
``tests/reliability/test_bad_data.py``): with ``color_type='color'`` grayscale and RGBA images
become 3-channel BGR (alpha dropped), 16-bit images are scaled to 8 bit, and the EXIF orientation
is applied; ``'color_ignore_orientation'`` and ``'unchanged'`` ignore it. A truncated JPEG/PNG
fails to decode. An image whose EXIF orientation (2-8) the loader applies must have annotations
that can be told to follow it: :func:`check_image_size` refuses it when its size as loaded equals
its stored size (mirrors, 180 degrees, square images), since annotations drawn on the stored
pixels would land off their objects without any size mismatch. The helpers here read image
headers the way the loader will see them, count
skipped annotations, and turn a loading failure into a :class:`~mambaout_dense.errors.DataError`
that names the file. They import neither mmdet nor mmseg.
"""
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Tuple

from mmengine.logging import print_log

from ..errors import DataError

__all__ = ['SkipReport', 'image_size_as_loaded', 'check_image_size', 'find_transform',
           'loader_applies_exif', 'wrap_loading_error', 'LOADING_ERRORS', 'missing_files_message']

_EXIF_ORIENTATION = 0x0112
#: What each EXIF orientation other than 1 does to the stored pixels to display them.
ORIENTATIONS = {2: 'mirrored', 3: 'rotated by 180 degrees', 4: 'flipped upside down',
                5: 'mirrored and rotated by 90 degrees', 6: 'rotated by 90 degrees',
                7: 'mirrored and rotated by 270 degrees', 8: 'rotated by 270 degrees'}
_STORED_PIXELS_FIX = "LoadImageFromFile(color_type='color_ignore_orientation')"
#: What a failing image decode raises inside a pipeline.
LOADING_ERRORS: Tuple[type, ...] = (OSError, ValueError, AssertionError)
try:  # OpenCV's error type is not an OSError
    import cv2
    LOADING_ERRORS += (cv2.error, )
except ImportError:  # pragma: no cover - mmcv requires OpenCV
    pass


class SkipReport:
    """Counts skipped (or repaired) annotations per kind and logs one warning per kind.

    Args:
        source (str): File named in the warnings.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.counts: 'OrderedDict[str, int]' = OrderedDict()
        self.examples: Dict[str, List[Any]] = {}
        self.actions: Dict[str, str] = {}

    def add(self, kind: str, example: Any, action: str = 'skipped') -> None:
        """Count one annotation of ``kind``; keep the first few ids as examples."""
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self.actions[kind] = action
        examples = self.examples.setdefault(kind, [])
        if len(examples) < 5:
            examples.append(example)

    def log(self) -> None:
        """One warning per kind: what was done, how often, example ids."""
        for kind, count in self.counts.items():
            more = ', ...' if count > len(self.examples[kind]) else ''
            ids = ', '.join(str(e) for e in self.examples[kind]) + more
            print_log(f'{self.source}: {self.actions[kind]} {count} annotation(s): {kind} '
                      f'(ids {ids})', logger='current', level=30)


def find_transform(pipeline: Any, name: str) -> Optional[Any]:
    for transform in getattr(pipeline, 'transforms', []):
        if type(transform).__name__ == name:
            return transform
    return None


def _header(path: str) -> Tuple[Tuple[int, int], int]:
    """((width, height) as stored, EXIF orientation: 1 when absent or invalid)."""
    from PIL import Image, UnidentifiedImageError
    if osp.getsize(path) == 0:
        raise DataError(f'image file is empty (0 bytes): {path!r}')
    try:
        with Image.open(path) as img:
            orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
            return img.size, orientation if orientation in ORIENTATIONS else 1
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DataError(f'cannot read image {path!r}: {err}') from None


def _as_loaded(stored: Tuple[int, int], orientation: int) -> Tuple[int, int]:
    return (stored[1], stored[0]) if orientation in (5, 6, 7, 8) else stored


def image_size_as_loaded(path: str, applies_exif: bool) -> Tuple[int, int]:
    """(width, height) of an image file as the loader will see it, from its header only.

    Args:
        path (str): Image file.
        applies_exif (bool): The loader rotates by the EXIF orientation (mmcv with
            ``color_type='color'`` / ``'grayscale'``).

    Raises:
        DataError: Empty or unreadable file.
    """
    stored, orientation = _header(path)
    return _as_loaded(stored, orientation) if applies_exif else stored


def check_image_size(path: str, expected: Tuple[int, int], applies_exif: bool,
                     source: str) -> None:
    """Check that an image, as the loader will see it, fits the annotations made for it.

    The size as loaded must equal ``expected``. When the loader applies an EXIF orientation
    (2-8) that leaves the size unchanged (a mirror, 180 degrees, or 90 degrees of a square
    image), the size cannot tell whether the annotations were drawn on the stored pixels or on
    the displayed image, so the image is refused with both fixes.

    Args:
        path (str): Image file.
        expected (tuple[int, int]): (width, height) the annotations are drawn on.
        applies_exif (bool): The loader applies the EXIF orientation (:func:`loader_applies_exif`).
        source (str): Where ``expected`` comes from (an annotation file, a label map), for the
            message.

    Raises:
        DataError: Empty or unreadable file, a size that differs (with the orientation named when
            it explains the difference), or an orientation the size cannot confirm.
    """
    stored, orientation = _header(path)
    loaded = _as_loaded(stored, orientation) if applies_exif else stored
    if tuple(expected) != loaded:
        hint = ''
        if orientation != 1 and tuple(expected) == stored:
            hint = (f' (its EXIF orientation {orientation}, {ORIENTATIONS[orientation]}, is '
                    'applied as loaded; annotations drawn on the stored pixels need '
                    f'{_STORED_PIXELS_FIX})')
        elif orientation != 1 and tuple(expected) == _as_loaded(stored, orientation):
            hint = (f' (annotations drawn on the displayed image need the EXIF orientation '
                    f"{orientation} applied: LoadImageFromFile(color_type='color'))")
        raise DataError(f'image {path!r} is {loaded[0]}x{loaded[1]} as loaded but {source} '
                        f'says {expected[0]}x{expected[1]}{hint}')
    if applies_exif and orientation != 1 and loaded == stored:
        raise DataError(
            f'image {path!r} carries the EXIF orientation {orientation} '
            f'({ORIENTATIONS[orientation]} for display), which the loader applies, but its size '
            f'is the same either way, so nothing shows whether {source} is drawn on the stored '
            'pixels or on the displayed image, and one of them would put every mask and box off '
            f'its object. Drawn on the stored pixels: load with {_STORED_PIXELS_FIX}. Drawn on '
            'the displayed image: save the image upright without the tag '
            '(PIL.ImageOps.exif_transpose(img).save(...)).')


def loader_applies_exif(pipeline: Any) -> bool:
    loader = find_transform(pipeline, 'LoadImageFromFile')
    color_type = getattr(loader, 'color_type', 'color')
    return 'ignore_orientation' not in color_type and color_type != 'unchanged'


def wrap_loading_error(err: Exception, info: dict) -> DataError:
    files = [info[k] for k in ('img_path', 'seg_map_path') if info.get(k)]
    return DataError(f'failed to load {" / ".join(map(repr, files))}: '
                     f'{type(err).__name__}: {str(err).strip()}')




def missing_files_message(what: str, paths: List[str], n: int = 5) -> str:
    """``"3 image(s) ... missing: 'a', 'b', 'c'"`` with at most ``n`` names shown."""
    more = f' ... (+{len(paths) - n} more)' if len(paths) > n else ''
    return f'{len(paths)} {what} missing: ' + ', '.join(repr(p) for p in paths[:n]) + more
