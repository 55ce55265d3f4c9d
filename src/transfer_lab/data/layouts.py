"""Where the photos are in a folder and what their labels are, for every layout the project reads.

- ``oxford_pets``: ``<Breed>_<n>.jpg`` at the root or in ``images/`` (official Oxford-IIIT Pet archive);
  cat breeds start upper-case, dog breeds lower-case.
- ``pet_images``: ``Cat/`` and ``Dog/`` at the root or in ``PetImages/`` (Microsoft Cats vs Dogs).
- ``folders``: one sub-folder per class (files anywhere below it).
- ``unlabelled``: image files with no label (evaluation predicts them; ingestion rejects them).
- ``auto``: the first of the above that fits.

Used by data_ingestion and by evaluation, so both apply the same label rules.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

LAYOUTS = ("auto", "oxford_pets", "pet_images", "folders", "unlabelled")
LABEL_MODES = ("breed", "species")
OXFORD_NAME = re.compile(r"^(?P<breed>[A-Za-z][A-Za-z_]*?)_(?P<n>\d+)\.[A-Za-z0-9]+$")
_JUNK_DIRS = {"__MACOSX", ".git", ".svn", "@eaDir"}
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}

NO_LABEL = "no_label"


class LayoutError(ValueError):
    """The folder does not fit the requested layout; the message says what to change."""


def species_of_breed(breed: str) -> str:
    return "cat" if breed[:1].isupper() else "dog"


def _files(folder: Path, recursive: bool) -> list[Path]:
    it = folder.rglob("*") if recursive else folder.iterdir()
    out = []
    for p in it:
        if any(part in _JUNK_DIRS for part in p.relative_to(folder).parts):
            continue
        if p.is_file() or (p.is_symlink() and not p.is_dir()):
            out.append(p)
    return sorted(out)


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in _JUNK_DIRS and not p.name.startswith("."))


def _unwrap(root: Path) -> Path:
    """Descend through single wrapper folders, as archives often have (``data/`` -> ``data/x/``)."""
    seen = 0
    while seen < 5:
        subdirs = _subdirs(root)
        files = [p for p in root.iterdir() if p.is_file() and not p.name.startswith(".")]
        if len(subdirs) == 1 and not files:
            root = subdirs[0]
            seen += 1
        else:
            break
    return root


def single_class_message(root: str | Path) -> str | None:
    """What to say when the photos of ``root`` sit in one class sub-folder only (the folder
    :func:`_unwrap` steps into, with no sub-folders of its own, or the only sub-folder), or None."""
    root = Path(root)
    inner = _unwrap(root)
    subdirs = _subdirs(inner)
    if inner != root and not subdirs:
        lone = inner
    elif len(subdirs) == 1:
        lone = subdirs[0]
    else:
        return None
    n = len(_files(lone, recursive=True))
    return (f"{lone.parent} has one class sub-folder only, '{lone.name}' ({n} files): at least two classes are "
            f"needed, one sub-folder per class. Add a sub-folder for each other class beside it "
            f"({lone.parent}/<class>/), or set data.source to a folder with two or more class folders.")


def _pet_images_root(root: Path) -> tuple[Path, dict[str, Path]] | None:
    for base in (root, root / "PetImages", root / "petimages"):
        if not base.is_dir():
            continue
        dirs = {d.name.lower(): d for d in _subdirs(base)}
        if "cat" in dirs and "dog" in dirs:
            return base, {"cat": dirs["cat"], "dog": dirs["dog"]}
    return None


def _oxford_root(root: Path) -> Path | None:
    for base in (root / "images", root):
        if not base.is_dir():
            continue
        files = [p for p in base.iterdir() if p.is_file()]
        images = [p for p in files if p.suffix.lower() in _IMAGE_EXT]
        matching = [p for p in images if OXFORD_NAME.match(p.name)]
        breeds = {OXFORD_NAME.match(p.name).group("breed") for p in matching}
        if images and len(matching) >= 0.8 * len(images) and len(breeds) >= 2:
            return base
    return None


def detect(root: Path) -> str:
    """The layout of ``root`` (never ``auto``)."""
    root = _unwrap(root)
    if _pet_images_root(root):
        return "pet_images"
    if _oxford_root(root):
        return "oxford_pets"
    if _subdirs(root):
        return "folders"
    return "unlabelled"


def scan(root: str | Path, layout: str = "auto", labels: str = "breed") -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """List the files of ``root`` with their labels.

    Returns ``(files, unlabelled, layout)``: ``files`` has columns ``path, label, species`` (every
    file that belongs to a class, image or not: the decoder decides later), ``unlabelled`` has
    ``path, reason, detail`` for files that have no label in this layout, and the resolved layout.
    """
    root = Path(root)
    if not root.exists():
        raise LayoutError(f"Source folder not found: {root}. Check data.source.")
    if not root.is_dir():
        raise LayoutError(f"Source is not a folder: {root}.")
    if layout not in LAYOUTS:
        raise LayoutError(f"Unknown layout '{layout}': use one of {', '.join(LAYOUTS)}.")
    if labels not in LABEL_MODES:
        raise LayoutError(f"Unknown labels '{labels}': use breed or species.")
    original, root = root, _unwrap(root)
    resolved = detect(root) if layout == "auto" else layout
    rows: list[tuple[str, str | None, str | None]] = []
    unlabelled: list[tuple[str, str, str]] = []

    if resolved == "pet_images":
        found = _pet_images_root(root)
        if not found:
            raise LayoutError(
                f"No Cat/ and Dog/ folders in {root} or {root / 'PetImages'}: this is not the pet_images layout. "
                "Use data.layout=auto to detect it."
            )
        if labels == "breed":
            log.warning("The pet_images layout has no breed labels: using species labels (cat, dog).")
        for species, folder in found[1].items():
            for p in _files(folder, recursive=True):
                rows.append((str(p), species, species))
    elif resolved == "oxford_pets":
        base = _oxford_root(root)
        if base is None:
            raise LayoutError(
                f"No <Breed>_<n>.jpg files in {root} or {root / 'images'}: this is not the oxford_pets layout. "
                "Use data.layout=auto to detect it."
            )
        for p in _files(base, recursive=False):
            m = OXFORD_NAME.match(p.name)
            if not m:
                unlabelled.append((str(p), NO_LABEL, "name does not match <Breed>_<n>.jpg"))
                continue
            breed = m.group("breed")
            species = species_of_breed(breed)
            rows.append((str(p), breed if labels == "breed" else species, species))
    elif resolved == "folders":
        subdirs = _subdirs(root)
        if not subdirs:
            raise LayoutError(single_class_message(original) or f"No class sub-folders in {root}: the folders layout needs one sub-folder per class.")
        for folder in subdirs:
            for p in _files(folder, recursive=True):
                rows.append((str(p), folder.name, None))
        for p in _files(root, recursive=False):
            unlabelled.append((str(p), NO_LABEL, "file is not inside a class folder"))
    else:  # unlabelled
        for p in _files(root, recursive=True):
            rows.append((str(p), None, None))

    files = pd.DataFrame(rows, columns=["path", "label", "species"])
    missing = pd.DataFrame(unlabelled, columns=["path", "reason", "detail"])
    return files, missing, resolved
