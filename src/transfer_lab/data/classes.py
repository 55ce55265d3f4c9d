"""Class names, species and class sets: the one vocabulary for "which classes does this word mean".

- A class name is compared in one normal form (:func:`norm`: lower case, ``_`` for spaces and
  dashes), everywhere.
- Species: the pet layouts label every photo ``cat`` or ``dog``; an Oxford breed's species is
  :func:`transfer_lab.data.layouts.species_of_breed`'s rule (capitalised = cat). A manifest's
  ``label`` / ``species`` columns give :func:`species_of`; on a breed classifier ``cat`` / ``dog``
  mean every breed of that species (:func:`species_groups`).
- On the 1000 ImageNet classes, ``cat`` and ``dog`` are groups (:data:`IMAGENET_GROUPS`).
- :func:`class_set` turns a name, an index, a group or a list of them into class indices (a
  "set": targets and true classes are sets); :func:`imagenet_set` finds the ImageNet classes
  that stand for a class of another model.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from transfer_lab.data.layouts import species_of_breed  # noqa: F401  (the breed -> species rule, re-used here)

#: The species of the pet layouts, in the order evaluation reports them.
SPECIES = ("cat", "dog")

# Groups of ImageNet classes a person means by one word. Indices follow Keras's class index
# (../shared/weights/imagenet_labels.txt): 281 tabby, 282 tiger_cat, 283 Persian_cat,
# 284 Siamese_cat, 285 Egyptian_cat; big cats (286 cougar .. 293 cheetah) are *not* cats here.
# Dogs are the 118 dog breeds 151 (Chihuahua) .. 268 (Mexican_hairless); wolves, foxes and
# other canids (269+) are not.
IMAGENET_GROUPS: dict[str, tuple[int, ...]] = {
    "cat": tuple(range(281, 286)),
    "dog": tuple(range(151, 269)),
}
GROUP_ALIASES = {"cats": "cat", "domestic_cat": "cat", "dogs": "dog"}


class ClassSetError(ValueError):
    """A class name, index or group that the model does not have; the message names the parameter."""


def norm(name: Any) -> str:
    """The one normal form of a class name: stripped, lower case, ``_`` for spaces and dashes."""
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def is_species_model(class_names: Sequence[str]) -> bool:
    """Whether the classes are exactly the species (``cat``, ``dog``)."""
    return sorted(norm(c) for c in class_names) == list(SPECIES)


def is_missing(value: Any) -> bool:
    """``None``, NaN or an empty string (an empty cell of a manifest)."""
    return value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == ""


def species_of(manifest: Any) -> dict[str, str]:
    """``{class label: species}`` from a manifest with ``label`` and ``species`` columns (empty
    when it has none)."""
    if manifest is None or "species" not in getattr(manifest, "columns", ()) or "label" not in manifest.columns:
        return {}
    pairs = manifest[["label", "species"]].dropna().drop_duplicates()
    return {str(label): str(species).lower() for label, species in pairs.itertuples(index=False) if str(species)}


def species_groups(species: Mapping[str, str], class_names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """On a breed classifier, ``cat`` / ``dog`` mean every breed of that species: ``{species:
    class indices}`` for the classes of ``class_names`` that ``species`` (see :func:`species_of`) names."""
    index = {str(c): i for i, c in enumerate(class_names)}
    groups: dict[str, set[int]] = {}
    for label, sp in species.items():
        if label in index and sp:
            groups.setdefault(sp, set()).add(index[label])
    return {k: tuple(sorted(v)) for k, v in groups.items()}


def class_set(
    name_or_index: Any,
    class_names: Sequence[str],
    param: str,
    *,
    groups: Mapping[str, Sequence[int]] | None = None,
) -> tuple[int, ...]:
    """Class indices meant by a name: a class name or index (via
    :func:`transfer_lab.models.backbones.resolve_class`, whose error lists near matches), a group
    (``cat`` on ImageNet = 281-285, on a breed model every cat breed), or a list of those."""
    from transfer_lab.models.backbones import resolve_class

    if isinstance(name_or_index, (list, tuple)):
        out: list[int] = []
        for item in name_or_index:
            out.extend(i for i in class_set(item, class_names, param, groups=groups) if i not in out)
        if not out:
            raise ClassSetError(f"{param} is an empty list: name at least one class.")
        return tuple(out)
    if groups is None and len(class_names) == 1000:
        groups = IMAGENET_GROUPS
    key = GROUP_ALIASES.get(norm(name_or_index), norm(name_or_index))
    lookup = {norm(c): i for i, c in enumerate(class_names)}
    if key in lookup:
        return (lookup[key],)
    if groups and key in groups:
        return tuple(int(i) for i in groups[key])
    return (resolve_class(name_or_index, list(class_names), param),)


def find_set(keys: Sequence[Any], class_names: Sequence[str], *,
             groups: Mapping[str, Sequence[int]] | None = None) -> tuple[tuple[int, ...] | None, int]:
    """The class set of the first of ``keys`` that names one (e.g. a photo's label, then its
    species), and which key it was (``-1``: none)."""
    for i, key in enumerate(keys):
        if is_missing(key):
            continue
        try:
            return class_set(str(key), class_names, "label", groups=groups or None), i
        except ValueError:
            continue
    return None, -1


def imagenet_set(members: Sequence[str], imagenet_names: Sequence[str], *, species: Mapping[str, str] | None = None,
                 class_map: Mapping[str, Any] | None = None, param: str = "class_map") -> tuple[list[int], str]:
    """The ImageNet classes that stand for a class (or group of classes) of another model, and
    how they were found: ``class_map`` when it names the class, else the class's own name or group
    (``cat`` = 281-285), else its species (a breed ImageNet lacks, like Abyssinian, counts as
    ``cat``), else none (``([], "none")``)."""
    species, class_map = dict(species or {}), dict(class_map or {})
    out: list[int] = []
    how: set[str] = set()
    for name in members:
        if name in class_map:
            idx, why = class_set(class_map[name], imagenet_names, f"{param}.{name}", groups=IMAGENET_GROUPS), "class_map"
        else:
            found, which = find_set([name, species.get(name)], imagenet_names, groups=IMAGENET_GROUPS)
            idx = found or ()
            why = ("name", "species")[which] if which >= 0 else "none"
        out.extend(i for i in idx if i not in out)
        how.add(why)
    return out, "+".join(sorted(how))
