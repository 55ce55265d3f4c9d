"""Nodes of the adversarial pipeline: resolve the classes and images (at once, before any long
work), attack, measure robustness, and report what the saved PNGs do to the model (and to a
second model).

The parameters arrive validated (:class:`~transfer_lab.params.adversarial.AdversarialParams`);
the model is chosen by :mod:`transfer_lab.models.choice` (as visualization chooses it), classes
and groups come from :mod:`transfer_lab.data.classes`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from transfer_lab.data import classes as vocab
from transfer_lab.data.manifest import without_duplicates
from transfer_lab.models import attacks, choice, explain
from transfer_lab.models.attacks import AttackError
from transfer_lab.params.adversarial import AdversarialParams
from transfer_lab.params.backbone import BackboneParams

log = logging.getLogger(__name__)

PARAM = "adversarial.model"
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}


# ------------------------------------------------------------------------------------------
# helpers


def _safe(name: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in str(name)) or "image"


def _target_text(target: Any) -> str | None:
    if target is None:
        return None
    return "+".join(map(str, target)) if isinstance(target, (list, tuple)) else str(target)


def _model(p: AdversarialParams, backbone: BackboneParams, finetuned: Any, head: Any) -> Any:
    return choice.studied_model(p.model, PARAM, backbone, finetuned=finetuned, head=head, image_size=p.image_size)


def _groups(classes: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v) for k, v in classes["groups"].items()}


def _true_set(row: Any, names: list[str], groups: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The classes that count as correct for a manifest row: its label's, else its species'."""
    found, _ = vocab.find_set([getattr(row, "label", None), getattr(row, "species", None)], names, groups=groups)
    return found


def _list_source(source: str) -> list[Path]:
    from transfer_lab.data.imaging import ImageRejected, inspect_image

    path = Path(str(source)).expanduser()
    if not path.exists():
        raise AttackError(f"adversarial.source={source!r} does not exist. Give a photo, a folder of photos, or null for the test split.")
    if path.is_file():
        try:
            inspect_image(path, min_side=1)
        except ImageRejected as exc:
            raise AttackError(f"adversarial.source={source!r} is not a usable image ({exc}). Give a photo or a folder of photos.") from None
        return [path]
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_EXT and not p.name.startswith("."))
    if not files:
        raise AttackError(
            f"adversarial.source={source!r} is a folder with no image files ({', '.join(sorted(_IMAGE_EXT))}). "
            "Give a photo, a folder of photos, or null for the test split."
        )
    return files


def _input_size(model: Any) -> int:
    return int(model.input_shape[1])


def _test_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    return without_duplicates(manifest[manifest["split"].astype(str) == "test"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# node 1: the classes and images, before any model is built


def resolve_classes(
    adversarial: AdversarialParams,
    backbone: BackboneParams,
    manifest: pd.DataFrame,
    class_names: Any,
    finetuned: Any,
    head: Any,
) -> dict[str, Any]:
    """The studied model's class names and groups, the target set and the source photos, checked
    before any long work: ``{"names", "groups", "target_set", "source_files"}`` (plain values)."""
    p = adversarial
    choice.require_classifier(p.model, PARAM, finetuned=finetuned, head=head)
    names = choice.studied_class_names(p.model, backbone, class_names)
    if p.model == "imagenet":
        groups: dict[str, tuple[int, ...]] = dict(vocab.IMAGENET_GROUPS)
    else:
        groups = vocab.species_groups(vocab.species_of(manifest), names)
    target_set = None if p.target is None else list(vocab.class_set(p.target, names, "adversarial.target", groups=groups))
    source_files = [str(f) for f in _list_source(p.source)] if p.source is not None else None
    if p.transfer is not None:
        from transfer_lab.models.backbones import imagenet_class_names

        imagenet_class_names(p.transfer.labels or backbone.imagenet_labels)  # fails now if there are no labels
    cfg = p.attack_config()
    what = (f"targeted -> {_target_text(p.target)} (classes {target_set[:8]}{'...' if len(target_set) > 8 else ''})"
            if target_set else "untargeted")
    log.info("Attack: %s, %s, eps=%g/255, %d steps of %g, on the %s model.", cfg.method, what, cfg.epsilon, cfg.steps,
             cfg.alpha, p.model)
    return {"names": names, "groups": {k: list(v) for k, v in groups.items()}, "target_set": target_set,
            "source_files": source_files}


# ------------------------------------------------------------------------------------------
# node 2: the attack


def attack_images(
    classes: Mapping[str, Any],
    adversarial: AdversarialParams,
    backbone: BackboneParams,
    manifest: pd.DataFrame,
    finetuned: Any,
    head: Any,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Attack the source images; return the adversarial images (saved as PNGs) and the records."""
    from transfer_lab.data.tfdata import load_batch
    from transfer_lab.runtime.devices import set_seed

    p = adversarial
    cfg = p.attack_config()
    set_seed(cfg.seed)
    model = _model(p, backbone, finetuned, head)
    size = _input_size(model)
    names = classes["names"]
    groups = _groups(classes)
    target_set = tuple(classes["target_set"]) if p.targeted else None
    source_files = classes["source_files"]

    if source_files is None:
        items = []
        for r in _test_rows(manifest).itertuples(index=False):
            true = _true_set(r, names, groups)
            if target_set is not None and true is not None and set(true) & set(target_set):
                continue  # already the target class
            if target_set is None and true is None:
                continue  # untargeted needs a true class
            items.append((str(r.path), true, str(getattr(r, "label", ""))))
        if not items:
            raise AttackError(
                "No test-split image to attack: every test image is of the target class or has no usable label. "
                "Check adversarial.target, or give adversarial.source=<photo or folder>."
            )
    else:
        items = [(f, None, "") for f in source_files]
    if p.max_images:
        items = items[: p.max_images]

    attack = attacks.PixelAttack(model)
    x = load_batch([f for f, _, _ in items], size, backbone.resize)
    clean = attack.predict_logits(x)
    true_sets = [t if t is not None else (int(np.argmax(clean[i])),) for i, (_, t, _) in enumerate(items)]
    keep = np.ones(len(items), bool)
    if target_set is not None and source_files is not None:
        keep = ~attacks.is_success(clean, attacks.set_mask([target_set] * len(items), len(names)), True)
        for i in np.flatnonzero(~keep):
            log.info("Skipping %s: the model already predicts the target (%s).", items[i][0], names[int(np.argmax(clean[i]))])
        if not keep.any():
            raise AttackError("Every source image is already classified as the target: nothing to attack.")
    items = [it for it, k in zip(items, keep) if k]
    x, true_sets = x[keep], [t for t, k in zip(true_sets, keep) if k]

    sets = [target_set] * len(x) if target_set is not None else true_sets
    result = attack.run(x, sets, targeted=p.targeted, config=cfg, progress=f"{cfg.method} eps={cfg.epsilon:g}")
    log.info("In-loop success %d/%d in %.1f s (%.3f s/image).", int(result.success.sum()), result.n, result.seconds, result.seconds / max(result.n, 1))

    img_names = [_safe(f"{i:04d}_{Path(f).stem}") for i, (f, _, _) in enumerate(items)]
    images = {n: result.adversarial[i].astype(np.uint8) for i, n in enumerate(img_names)}
    records = {
        "names": img_names,
        "paths": [f for f, _, _ in items],
        "labels": [lab for _, _, lab in items],
        "true_sets": [list(t) for t in true_sets],
        "original": x.astype(np.uint8),
        "clean_logits": result.clean_logits,
        "loop_logits": result.adv_logits,
        "loop_success": result.success,
        "steps": result.steps,
        "seconds": float(result.seconds),
        "config": cfg.describe(),
    }
    return images, records


# ------------------------------------------------------------------------------------------
# node 3: robustness over the test split


def robustness_curve(
    classes: Mapping[str, Any],
    adversarial: AdversarialParams,
    backbone: BackboneParams,
    manifest: pd.DataFrame,
    finetuned: Any,
    head: Any,
) -> dict[str, Any]:
    """Accuracy on the test split under an untargeted attack (PGD by default), for each budget."""
    from transfer_lab.data.tfdata import load_batch

    p = adversarial
    rob = p.robustness
    if not rob.budgets:
        return {"budgets": [], "accuracy": [], "n_images": 0}
    model = _model(p, backbone, finetuned, head)
    names = classes["names"]
    groups = _groups(classes)
    items = []
    for r in _test_rows(manifest).itertuples(index=False):
        true = _true_set(r, names, groups)
        if true is not None:
            items.append((str(r.path), true))
    if not items:
        log.warning("No labelled test image the model's classes cover: robust accuracy skipped.")
        return {"budgets": rob.budgets, "accuracy": [None] * len(rob.budgets), "n_images": 0}
    rng = np.random.default_rng(p.seed)
    if rob.max_images and len(items) > rob.max_images:
        pick = np.sort(rng.choice(len(items), rob.max_images, replace=False))
        items = [items[i] for i in pick]
    attack = attacks.PixelAttack(model)
    x = load_batch([f for f, _ in items], _input_size(model), backbone.resize)
    mask = attacks.set_mask([t for _, t in items], len(names))
    clean_ok = ~attacks.is_success(attack.predict_logits(x), mask, targeted=False)
    # The budgets share their work, smallest first: an image an attack broke within a budget is broken
    # within every larger one (the same change fits), so each budget attacks only the images that
    # every smaller budget left standing; misclassified images are not robust at any budget.
    robust = clean_ok.copy()
    by_budget: dict[float, tuple[float, float]] = {}
    for eps in sorted(set(rob.budgets)):
        if eps == 0 or (p.quantize and eps < 1) or not robust.any():
            # No whole-pixel change fits in a budget under 1/255: the images are the clean ones.
            by_budget[eps] = (float(robust.mean()), 0.0)
            continue
        cfg = p.robustness_config(eps)
        res = attack.run(x[robust], mask[robust], targeted=False, config=cfg, progress=f"robustness eps={eps:g}")
        still = robust.copy()
        still[robust] = ~np.asarray(res.success, dtype=bool)
        robust = still
        by_budget[eps] = (float(robust.sum() / len(x)), float(res.seconds))
        log.info("Robust accuracy at eps=%g/255: %.3f (%d images attacked, %.1f s).", eps, by_budget[eps][0],
                 int(len(res.success)), res.seconds)
    accuracy = [by_budget[eps][0] for eps in rob.budgets]
    seconds = [by_budget[eps][1] for eps in rob.budgets]
    cfg = p.robustness_config(max(max(rob.budgets), 1.0))
    attack_desc = {k: v for k, v in cfg.describe().items() if k not in ("epsilon", "step_size")}
    attack_desc |= {"batch_size": cfg.batch_size, "seed": cfg.seed,
                    "step_size": "epsilon/4 (at least 0.25)" if rob.step_size is None else rob.step_size}
    return {"budgets": list(rob.budgets), "accuracy": accuracy, "n_images": len(x), "seconds": seconds,
            "attack": attack_desc}


# ------------------------------------------------------------------------------------------
# node 4: read the PNGs back, measure, transfer, figures


def _fit(model: Any, images: np.ndarray) -> np.ndarray:
    """Images resized to the model's input (only when the sizes differ), whole pixels."""
    size = tuple(int(d) for d in model.input_shape[1:3])
    if images.shape[1:3] == size:
        return images.astype(np.float32)
    import tensorflow as tf

    out = tf.image.resize(images.astype(np.float32), size, antialias=True).numpy()
    return np.clip(np.rint(out), 0, 255).astype(np.float32)


def _transfer(p: AdversarialParams, backbone: BackboneParams, classes: Mapping[str, Any], records: Mapping[str, Any],
              adv: np.ndarray, fooled: np.ndarray) -> dict[str, Any] | None:
    """How many of the images that fooled the attacked model also fool a second model
    (``clean_rate``: how many the second model already put in the goal set before the attack)."""
    from transfer_lab.models.predict import predict_array

    if p.transfer is None:
        return None
    model, names = choice.second_model(p.transfer, int(adv.shape[1]), backbone)
    groups = dict(vocab.IMAGENET_GROUPS)
    src_names = classes["names"]
    label = p.transfer.describe()
    if p.targeted:
        try:
            tset = vocab.class_set(p.target, names, "adversarial.target", groups=groups)
        except ValueError:
            log.warning("Target %r has no counterpart among the ImageNet classes: transfer rate skipped.", p.target)
            return {"model": label, "rate": None, "note": "the target is not an ImageNet class or group"}
        sets = [tset] * len(adv)
    else:
        sets = [vocab.find_set([lab or (src_names[true[0]] if true else "")], names, groups=groups)[0]
                for lab, true in zip(records["labels"], records["true_sets"])]
    ok = np.array([s is not None for s in sets])
    mask = attacks.set_mask([s or () for s in sets], len(names))
    p_adv = predict_array(model, _fit(model, adv), batch_size=32)
    p_clean = predict_array(model, _fit(model, records["original"]), batch_size=32)
    # log-probabilities order the classes as the logits do
    succ = attacks.is_success(np.log(np.maximum(p_adv, 1e-30)), mask, p.targeted)
    base = attacks.is_success(np.log(np.maximum(p_clean, 1e-30)), mask, p.targeted)
    sel = fooled & ok
    return {
        "model": label,
        "n_images": int(sel.sum()),
        "rate": float(succ[sel].mean()) if sel.any() else None,
        "clean_rate": float(base[ok].mean()) if ok.any() else None,
    }


def _saliency_maps(model: Any, orig: np.ndarray, adv: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Saliency maps (explain's default method, traced once per model) of the originals and of the
    attacked images, each for its own predicted class; (None, None) when the model cannot be explained."""
    if not len(orig):
        return None, None
    try:
        maps = explain.explain(model, np.concatenate([orig, adv]).astype(np.float32)).maps
    except explain.ExplainError as exc:
        log.warning("Adversarial figures without saliency maps: %s", exc)
        return None, None
    return maps[:len(orig)], maps[len(orig):]


def report(
    classes: Mapping[str, Any],
    saved: Mapping[str, np.ndarray],
    records: Mapping[str, Any],
    robustness: Mapping[str, Any],
    adversarial: AdversarialParams,
    backbone: BackboneParams,
    finetuned: Any,
    head: Any,
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Metrics measured on the saved PNGs read back with the project's decoder; figures."""
    from transfer_lab.models.predict import softmax
    from transfer_lab.reports import plots

    p = adversarial
    names_cls = classes["names"]
    missing = [n for n in records["names"] if n not in saved]
    if missing:
        raise AttackError(f"{len(missing)} adversarial PNGs are missing from the output folder (e.g. {missing[0]}). Run the pipeline again.")
    adv = np.stack([np.asarray(saved[n], np.float32) for n in records["names"]])
    orig = records["original"].astype(np.float32)
    model = _model(p, backbone, finetuned, head)
    z_adv = attacks.PixelAttack(model).predict_logits(adv)
    z_clean = records["clean_logits"]
    targeted = p.targeted
    goal_sets = [classes["target_set"]] * len(adv) if targeted else records["true_sets"]
    mask = attacks.set_mask(goal_sets, len(names_cls))
    true_mask = attacks.set_mask(records["true_sets"], len(names_cls))
    success = attacks.is_success(z_adv, mask, targeted)
    p_clean, p_adv = softmax(z_clean), softmax(z_adv)
    linf, l2 = attacks.perturbation_norms(orig, adv)
    steps = np.asarray(records["steps"])
    already = attacks.is_success(z_clean, mask, targeted)
    tprob_b = (p_clean * mask).sum(1)
    tprob_a = (p_adv * mask).sum(1)
    trueprob_b = (p_clean * true_mask).sum(1)
    trueprob_a = (p_adv * true_mask).sum(1)

    transfer = _transfer(p, backbone, classes, records, adv, success)
    n = len(adv)
    cfg = records["config"]
    metrics: dict[str, Any] = {
        "model": p.model,
        "targeted": targeted,
        "target": _target_text(p.target),
        "attack": cfg,
        "n_images": n,
        "success_rate": float(success.mean()) if n else 0.0,
        "success_rate_in_loop": float(np.mean(records["loop_success"])) if n else 0.0,
        "readback_agreement": float(np.mean(success == np.asarray(records["loop_success"]))) if n else 1.0,
        "already_successful": int(already.sum()),
        # among the images the model did not already put in the goal set
        "success_rate_attacked": float(success[~already].mean()) if (~already).any() else None,
        "linf_mean": float(linf.mean()) if n else 0.0,
        "linf_max": float(linf.max()) if n else 0.0,
        "l2_mean": float(l2.mean()) if n else 0.0,
        "l2_max": float(l2.max()) if n else 0.0,
        "steps_mean": float(steps[success].mean()) if success.any() else None,
        "target_prob_before": float(tprob_b.mean()) if targeted and n else None,
        "target_prob_after": float(tprob_a.mean()) if targeted and n else None,
        "true_prob_before": float(trueprob_b.mean()) if n else None,
        "true_prob_after": float(trueprob_a.mean()) if n else None,
        "seconds_per_image": float(records["seconds"] / max(n, 1)),
        "robust_accuracy": {f"{b:g}": a for b, a in zip(robustness.get("budgets", []), robustness.get("accuracy", []))},
        "robust_accuracy_n_images": robustness.get("n_images", 0),
        "robust_accuracy_attack": robustness.get("attack"),
        "transfer": transfer,
        "transfer_rate": None if transfer is None else transfer.get("rate"),
        "units": "epsilon, L-inf and L2 in 0-255 pixel units; success measured on the saved PNGs decoded again",
    }
    log.info("Success on the saved PNGs: %d/%d (in the loop: %d); L-inf max %.0f, L2 mean %.1f.",
             int(success.sum()), n, int(np.sum(records["loop_success"])), metrics["linf_max"], metrics["l2_mean"])

    def top(p: np.ndarray) -> tuple[str, float]:
        k = int(np.argmax(p))
        return names_cls[k], float(p[k])

    table_rows = []
    for i, name in enumerate(records["names"]):
        pc, pa = top(p_clean[i]), top(p_adv[i])
        table_rows.append({
            "name": name, "path": records["paths"][i], "label": records["labels"][i],
            "clean_pred": pc[0], "clean_prob": round(pc[1], 4), "adv_pred": pa[0], "adv_prob": round(pa[1], 4),
            "success": bool(success[i]), "steps": int(steps[i]), "linf": float(linf[i]), "l2": round(float(l2[i]), 2),
            "target_prob_before": round(float(tprob_b[i]), 4) if targeted else None,
            "target_prob_after": round(float(tprob_a[i]), 4) if targeted else None,
            "true_prob_before": round(float(trueprob_b[i]), 4), "true_prob_after": round(float(trueprob_a[i]), 4),
        })
    table = pd.DataFrame(table_rows)

    # Figures: one panel per image (up to max_panels), a grid, the robustness curve.
    eps = float(cfg["epsilon"])
    figures: dict[str, Any] = {}
    grid_imgs, grid_titles, grid_colors = [], [], []
    shown = min(n, p.max_panels)
    map_orig, map_adv = _saliency_maps(model, orig[:shown], adv[:shown])
    for i in range(shown):
        d = adv[i] - orig[i]
        scale = 127.5 / max(eps, 1.0)
        pert = np.clip(127.5 + d * scale, 0, 255)
        pc, pa = top(p_clean[i]), top(p_adv[i])
        titles = [f"original: {pc[0]} {pc[1]:.2f}", f"adversarial: {pa[0]} {pa[1]:.2f}",
                  f"perturbation x{scale:.0f} (Linf {linf[i]:.0f}, L2 {l2[i]:.0f})"]
        colors = ["black", "green" if success[i] else "red", "black"]
        panels, short = [orig[i], adv[i], pert], [f"{pc[0]} {pc[1]:.2f}", f"{pa[0]} {pa[1]:.2f}", f"x{scale:.0f} Linf {linf[i]:.0f}"]
        if map_orig is not None:  # where the evidence was, and where the attack moved it
            panels += [explain.overlay(orig[i], map_orig[i]), explain.overlay(adv[i], map_adv[i])]
            titles += [f"map of the original: {pc[0]}", f"map of the attacked: {pa[0]}"]
            short += [f"map: {pc[0]}", f"map: {pa[0]}"]
            colors += ["black", "green" if success[i] else "red"]
        figures[records["names"][i]] = plots.image_grid(panels, titles, ncols=len(panels), cell=3.0, title_colors=colors)
        grid_imgs += panels
        grid_titles += short
        grid_colors += colors
    if grid_imgs:
        what = f"-> {_target_text(p.target)}" if targeted else "untargeted"
        figures["grid"] = plots.image_grid(
            grid_imgs, grid_titles, ncols=5 if map_orig is not None else 6, cell=2.2, title_colors=grid_colors,
            suptitle=f"{cfg['method'].upper()} {what}, eps={eps:g}/255: {int(success.sum())}/{n} fool the model (saved PNGs)",
        )
    if robustness.get("budgets") and robustness.get("n_images"):
        ra = robustness["attack"]
        figures["robust_accuracy"] = plots.line_plot(
            robustness["budgets"], {f"{ra['method'].upper()}-{ra['steps']} untargeted": robustness["accuracy"]},
            xlabel="L-inf budget epsilon (0-255 pixel units)", ylabel="accuracy on the test split",
            title=f"Robust accuracy ({p.model} model, {robustness['n_images']} test images)",
        )
    return metrics, table, figures
