"""Decode once: a cache of decoded, resized photos as memory-mapped uint8 arrays.

Each photo is decoded by the project's one decoder (:func:`transfer_lab.data.imaging.load_rgb`)
and resized once per (size, resize mode); the pixels are kept in ``<root>/<H>x<W>/`` (``squash``) or
``<root>/<H>x<W>-crop/`` as ``.npy`` shards that every
pipeline reads back memory-mapped (feature extraction, fine-tuning's every epoch, evaluation).

A photo is known by its path, byte size and modification time: a photo that changed (or a new one)
is decoded again, the others never. New photos go to a new shard, written to a temporary name and
renamed, and the index (``index.json``) is replaced the same way, so an interrupted build leaves the
cache as it was. Decoding runs on a thread pool: PIL's decode and resize release the GIL.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import numpy as np

from transfer_lab.data.imaging import _check_resize, load_rgb

log = logging.getLogger(__name__)

INDEX = "index.json"


def photo_key(path: str | Path) -> str:
    """What identifies a photo's pixels: its resolved path, byte size and modification time."""
    p = Path(path)
    st = p.stat()
    return f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def default_workers() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class PixelCache:
    """Decoded photos of one size and resize mode under ``root`` (``root/<H>x<W>[-crop]/``)."""

    def __init__(self, root: str | Path, size: int | tuple[int, int], resize: str = "squash"):
        self.size = (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))
        self.resize = _check_resize(resize)
        suffix = "" if resize == "squash" else f"-{resize}"
        self.folder = Path(root) / f"{self.size[0]}x{self.size[1]}{suffix}"

    # -- index ---------------------------------------------------------------------------------
    def _read_index(self) -> dict[str, list]:
        path = self.folder / INDEX
        if not path.exists():
            return {}
        try:
            index = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("The pixel cache index %s is unreadable: decoding the photos again.", path)
            return {}
        # entries whose shard is gone are forgotten (someone cleaned the folder)
        shards = {name for name, _ in index.values()}
        present = {name for name in shards if (self.folder / name).exists()}
        return {k: v for k, v in index.items() if v[0] in present}

    def _write_index(self, index: dict[str, list]) -> None:
        tmp = self.folder / f".{INDEX}.{uuid.uuid4().hex}.tmp"
        tmp.write_text(json.dumps(index))
        os.replace(tmp, self.folder / INDEX)

    # -- build and read ------------------------------------------------------------------------
    def pixels(self, paths: Sequence[str | Path], *, workers: int | None = None) -> np.ndarray:
        """A (N, H, W, 3) uint8 array of ``paths`` in order, decoding only the photos not cached yet.

        The array is a gather from memory-mapped shards (the page cache holds them between pipelines)."""
        paths = [str(p) for p in paths]
        h, w = self.size
        if not paths:
            return np.zeros((0, h, w, 3), np.uint8)
        self.folder.mkdir(parents=True, exist_ok=True)
        keys = [photo_key(p) for p in paths]
        index = self._read_index()
        missing = list(dict.fromkeys(k for k in keys if k not in index))
        if missing:
            index.update(self._build(missing, {k: p for k, p in zip(keys, paths)}, workers))
            self._write_index(index)
        out = np.empty((len(paths), h, w, 3), np.uint8)
        shards: dict[str, np.ndarray] = {}
        for i, key in enumerate(keys):
            name, row = index[key]
            if name not in shards:
                shards[name] = np.load(self.folder / name, mmap_mode="r")
            out[i] = shards[name][row]
        return out

    def _build(self, keys: list[str], path_of: dict[str, str], workers: int | None) -> dict[str, list]:
        from transfer_lab.runtime.progress import progress_bar

        h, w = self.size
        name = f"pixels-{uuid.uuid4().hex[:12]}.npy"
        tmp = self.folder / f".{name}.tmp"
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(keys), h, w, 3))
        size = (h, w) if h != w else h

        def decode(i: int) -> int:
            arr[i] = load_rgb(path_of[keys[i]], size, resize=self.resize)
            return i

        try:
            with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool, \
                    progress_bar(total=len(keys), desc=f"Decoding photos ({h}x{w})", unit="img") as bar:
                for _ in pool.map(decode, range(len(keys))):
                    bar.update(1)
            arr.flush()
            del arr
            os.replace(tmp, self.folder / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        log.info("Decoded %d photos into the pixel cache %s (%dx%d).", len(keys), self.folder / name, h, w)
        return {k: [name, i] for i, k in enumerate(keys)}


def cached_pixels(paths: Sequence[str | Path], size: int | tuple[int, int],
                  root: str | Path | None, resize: str = "squash") -> np.ndarray | None:
    """``PixelCache(root, size, resize).pixels(paths)``, or ``None`` when the cache is off (``root`` null)."""
    if root in (None, "", False):
        return None
    return PixelCache(root, size, resize).pixels(paths)


def pixel_cache_folder(runtime, rt=None) -> Path | None:
    """Where this process keeps decoded photos: ``runtime.pixel_cache`` (``None``: off); a private
    folder on the non-chief workers of a multi-worker run, which write nothing the chief writes."""
    import tempfile

    from transfer_lab.runtime.cluster import is_chief, worker_path
    from transfer_lab.runtime.strategy import current

    root = getattr(runtime, "pixel_cache", None)
    if root in (None, ""):
        return None
    rt = current() if rt is None else rt  # the run's runtime (the hook sets it up before any node)
    if rt is None and not is_chief():
        return Path(tempfile.gettempdir()) / f"transfer_lab_pixels_{os.getpid()}"
    return worker_path(Path(str(root)).expanduser(), rt)
