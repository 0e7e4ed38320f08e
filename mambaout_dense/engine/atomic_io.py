r"""Atomic local writes: a file is either the old one or the complete new one.

mmengine's ``save_checkpoint`` writes through ``LocalBackend.put``, which opens the final path
and writes in place: a crash mid-write leaves a truncated ``iter_N.pth`` under its final name.
:class:`AtomicLocalBackend` writes to a hidden temporary file in the same folder, ``fsync``\ s it
and ``os.replace``\ s it onto the final name. :mod:`mambaout_dense.safe_io` registers it as
mmengine's ``local`` backend; importing this module changes nothing.
"""
import contextlib
import os
import os.path as osp
import re
import uuid

from mmengine.fileio import LocalBackend

__all__ = ['TMP_RE', 'atomic_write_bytes', 'AtomicLocalBackend']

#: Temporary files of :func:`atomic_write_bytes`: ``.<name>.<pid>.<8 hex>.tmp`` next to ``name``.
TMP_RE = re.compile(r'^\.(?P<name>.+)\.\d+\.[0-9a-f]{8}\.tmp$')


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one.

    The bytes go to a hidden temporary file in the same folder (same file system, so the rename
    is atomic), are flushed to disk, and the file is renamed onto ``path``. A crash leaves at most
    a stray ``.<name>.<pid>.<hex>.tmp`` (removed by :func:`find_resumable_checkpoint`).

    Args:
        path (str): Destination file; its folder is created if needed.
        data (bytes): The content.
    """
    path = osp.abspath(os.fspath(path))
    folder = osp.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp')
    try:
        with open(tmp, 'xb') as f:  # 'x': never clobber; mode bits follow the umask
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    with contextlib.suppress(OSError):  # persist the rename itself (not possible everywhere)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic :meth:`put` and :meth:`put_text`."""

    def put(self, obj: bytes, filepath) -> None:
        """Write bytes to ``filepath`` atomically (temporary file + ``os.replace``)."""
        atomic_write_bytes(filepath, obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        """Write text to ``filepath`` atomically."""
        atomic_write_bytes(filepath, obj.encode(encoding))
