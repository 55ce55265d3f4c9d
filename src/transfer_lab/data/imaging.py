"""The one image decoder of the project.

Ingestion checks every photo with :func:`inspect_image`; training, evaluation, visualisation and
the attacks read pixels with :func:`load_rgb`. Both go through :func:`_open_rgb`, so an image that
ingestion accepted is decoded the same way everywhere, whatever its extension says: JPEG, PNG,
GIF, BMP, WebP, TIFF; grayscale, palette, CMYK, 16-bit and alpha all come out as 8-bit RGB.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from transfer_lab.io.files import atomic_path

# Never paper over a truncated file: it is rejected instead.
ImageFile.LOAD_TRUNCATED_IMAGES = False

DEFAULT_MIN_SIDE = 32
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own decompression-bomb threshold

# Reason codes written to rejected_images.csv (column ``reason``), with a human detail beside.
EMPTY = "empty_file"
NOT_IMAGE = "not_an_image"
TRUNCATED = "truncated"
CORRUPT = "corrupt"
TOO_SMALL = "too_small"
TOO_LARGE = "too_large"
UNREADABLE = "unreadable"


class ImageRejected(ValueError):
    """An image that cannot be used; ``reason`` is one of the codes above."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ImageInfo:
    sha256: str
    width: int
    height: int
    format: str
    mode: str
    n_bytes: int


_MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)


def _magic_format(data: bytes) -> str | None:
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return fmt
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "HTML/XML text (an error page saved as an image?)"
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        return "an OLE compound file (Thumbs.db or an Office document)"
    if head.startswith(b"pk\x03\x04"):
        return "a zip archive"
    try:
        data[:512].decode("utf-8")
        return "plain text"
    except UnicodeDecodeError:
        return "an unknown binary format"


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        hi = float(arr.max()) if arr.size else 0.0
        scale = 255.0 / hi if hi > 255 else 1.0
        img = Image.fromarray(np.clip(arr * scale, 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")  # L, 1, CMYK, YCbCr, LAB, HSV


def _open_rgb(
    data: bytes,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    draft_size: int | None = None,
) -> tuple[Image.Image, str]:
    """Decode ``data`` fully and return (RGB image, source format), or raise :class:`ImageRejected`."""
    if len(data) == 0:
        raise ImageRejected(EMPTY, "the file is 0 bytes")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
        except UnidentifiedImageError:
            fmt = _magic_format(data)
            if fmt:
                raise ImageRejected(CORRUPT, f"starts like a {fmt} file but its header cannot be read") from None
            raise ImageRejected(NOT_IMAGE, f"not an image: looks like {_sniff(data)}") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(TOO_LARGE, f"decompression bomb refused ({exc})") from None
        except Exception as exc:  # malformed headers
            raise ImageRejected(CORRUPT, f"unreadable header: {exc}") from None
        fmt = img.format or "unknown"
        width, height = img.size
        if width * height > max_pixels:
            raise ImageRejected(
                TOO_LARGE,
                f"{width}x{height} = {width * height:,} pixels is over data.max_pixels={max_pixels:,}",
            )
        if min(width, height) < min_side:
            raise ImageRejected(TOO_SMALL, f"{width}x{height} is under data.min_side={min_side} px")
        try:
            if draft_size and fmt == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller.
                img.draft("RGB", (draft_size, draft_size))
            img.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise ImageRejected(TOO_LARGE, f"decompression bomb refused ({exc})") from None
        except OSError as exc:
            msg = str(exc)
            if "truncated" in msg or "premature" in msg.lower():
                raise ImageRejected(TRUNCATED, f"the file ends early ({msg})") from None
            raise ImageRejected(CORRUPT, f"cannot decode: {msg}") from None
        except Exception as exc:  # Pillow raises assorted errors on broken streams
            raise ImageRejected(CORRUPT, f"cannot decode: {type(exc).__name__}: {exc}") from None
        try:
            img = ImageOps.exif_transpose(img)
        except Exception:  # a broken EXIF block is no reason to drop the photo
            pass
        return _to_rgb(img), fmt


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageRejected(UNREADABLE, f"no such file: {path}") from None
    except IsADirectoryError:
        raise ImageRejected(UNREADABLE, f"is a folder, not a file: {path}") from None
    except OSError as exc:
        raise ImageRejected(UNREADABLE, f"cannot read {path}: {exc.strerror or exc}") from None


def inspect_image(
    path: str | Path,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> ImageInfo:
    """Fully decode one file and describe it, or raise :class:`ImageRejected` saying why not."""
    return decode_checked(path, min_side=min_side, max_pixels=max_pixels)[0]


def decode_checked(
    path: str | Path,
    *,
    min_side: int = DEFAULT_MIN_SIDE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[ImageInfo, Image.Image]:
    """:func:`inspect_image` and the decoded RGB image it checked (ingestion hashes those pixels)."""
    data = _read(path)
    img, fmt = _open_rgb(data, min_side=min_side, max_pixels=max_pixels)
    info = ImageInfo(
        sha256=hashlib.sha256(data).hexdigest(),
        width=img.width,
        height=img.height,
        format=fmt,
        mode=img.mode,
        n_bytes=len(data),
    )
    return info, img


#: How a photo becomes the model's input shape: ``squash`` stretches the whole photo to it (what
#: ``keras.utils.image_dataset_from_directory`` does by default); ``crop`` keeps the aspect ratio and
#: takes the largest centred box of the target's shape (Keras's ``crop_to_aspect_ratio=True``).
RESIZE_MODES = ("squash", "crop")


def _check_resize(resize: str) -> str:
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, not {resize!r}")
    return resize


def resize_of(classifier_config: dict | None, default: str = "squash") -> str:
    """The resize mode a trained classifier was made with (``classifier_config.json``'s ``resize``);
    ``default`` for configurations written before the option existed (they squashed)."""
    return _check_resize(str((classifier_config or {}).get("resize") or default))


def crop_box(width: int, height: int, target_w: int, target_h: int) -> tuple[float, float, float, float]:
    """The largest centred box of ``width`` x ``height`` with the aspect ratio of the target."""
    if width * target_h > height * target_w:  # too wide: trim the sides
        w = height * target_w / target_h
        left = (width - w) / 2
        return (left, 0.0, left + w, float(height))
    h = width * target_h / target_w  # too tall (or exact): trim top and bottom
    top = (height - h) / 2
    return (0.0, top, float(width), top + h)


def resize_rgb(img: Image.Image, size: int | tuple[int, int], resize: str = "squash") -> Image.Image:
    """Resize to ``size`` (int: square, or (height, width)), bilinear with antialiasing.

    ``resize="squash"`` does not keep the aspect ratio (as ``keras.utils.image_dataset_from_directory``);
    ``"crop"`` resizes the centred box of the target's aspect ratio (:func:`crop_box`), so nothing is
    stretched."""
    target = (size, size) if isinstance(size, int) else (int(size[1]), int(size[0]))
    if img.size == target:
        return img
    box = crop_box(img.width, img.height, *target) if _check_resize(resize) == "crop" else None
    return img.resize(target, Image.BILINEAR, box=box, reducing_gap=3.0)


def load_rgb(
    source: str | Path | bytes,
    size: int | tuple[int, int] | None = None,
    *,
    resize: str = "squash",
    min_side: int = 1,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file (path or bytes) to a ``uint8`` array of shape (H, W, 3).

    With ``size`` (an int for a square, or (height, width)) the image is resized to it, the
    ``resize`` way (:data:`RESIZE_MODES`).
    """
    data = source if isinstance(source, (bytes, bytearray)) else _read(source)
    draft = None
    if size is not None:
        draft = size if isinstance(size, int) else max(size)
    img, _ = _open_rgb(bytes(data), min_side=min_side, max_pixels=max_pixels, draft_size=draft)
    if size is not None:
        img = resize_rgb(img, size, resize)
    return np.asarray(img, dtype=np.uint8)


def save_png(array: np.ndarray, path: str | Path) -> None:
    """Write a (H, W, 3) array in 0-255 as a lossless PNG, rounding to whole pixel values."""
    arr = np.clip(np.rint(np.asarray(array, dtype=np.float64)), 0, 255).astype(np.uint8)
    with atomic_path(path) as tmp:
        Image.fromarray(arr, "RGB").save(tmp, format="PNG")
