"""Seeded photo sets for the audit: copies of photos made six ways, and photos moved into the
wrong class folder. Everything is written under a temporary folder; ../shared is only read."""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageEnhance, ImageOps


def _jpeg(img: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _scale(img: Image.Image, f: float) -> Image.Image:
    return img.resize((max(1, round(img.width * f)), max(1, round(img.height * f))), Image.LANCZOS)


def _crop(img: Image.Image, f: float) -> Image.Image:
    dx, dy = round(img.width * f), round(img.height * f)
    return img.crop((dx, dy, img.width - dx, img.height - dy))


#: name -> (image -> JPEG bytes): the six kinds of copy of issue 17
TRANSFORMS: dict[str, Callable[[Image.Image], bytes]] = {
    "jpeg60": lambda im: _jpeg(im, 60),
    "shrink60": lambda im: _jpeg(_scale(im, 0.6)),
    "crop6": lambda im: _jpeg(_crop(im, 0.06)),
    "bright25": lambda im: _jpeg(ImageEnhance.Brightness(im).enhance(1.25)),
    "mirror": lambda im: _jpeg(ImageOps.mirror(im)),
    "shrink_low_contrast": lambda im: _jpeg(ImageEnhance.Contrast(_scale(im, 0.5)).enhance(0.7)),
}


@dataclass
class SeededSet:
    root: Path
    #: copy path -> (original path, transform name)
    copies: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: moved photo path -> its true class
    moved: dict[str, str] = field(default_factory=dict)
    originals: list[str] = field(default_factory=list)


def seed_photo_set(
    src_dirs: dict[str, list[Path]], root: Path, *, n_originals: int = 4, n_moved: int = 20, seed: int = 0
) -> SeededSet:
    """``root/<class>/<name>.jpg`` from ``src_dirs`` ({class: photos}): every photo copied as is;
    ``n_originals`` of them also copied six ways (``TRANSFORMS``) beside the original; ``n_moved``
    others moved into another class's folder."""
    rng = np.random.default_rng(seed)
    out = SeededSet(root=root)
    classes = sorted(src_dirs)
    everything = [(c, p) for c in classes for p in src_dirs[c]]
    order = rng.permutation(len(everything))
    chosen = [everything[i] for i in order[:n_originals]]
    moved = [everything[i] for i in order[n_originals:n_originals + n_moved]]
    moved_set = {str(p) for _, p in moved}
    for c, p in everything:
        if str(p) in moved_set:
            continue
        dest = root / c / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
    for c, p in moved:
        others = [o for o in classes if o != c]
        wrong = others[int(rng.integers(len(others)))]
        dest = root / wrong / p.name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(p, dest)
        out.moved[str(dest)] = c
    for c, p in chosen:
        original = root / c / p.name
        out.originals.append(str(original))
        with Image.open(p) as im:
            im = im.convert("RGB")
            for name, make in TRANSFORMS.items():
                dest = root / c / f"{p.stem}_{name}.jpg"
                dest.write_bytes(make(im))
                out.copies[str(dest)] = (str(original), name)
    return out
