"""Nodes of the adversarial pipeline: check the parameters, attack, measure robustness, and
report what the saved PNGs do to the model (and to a second model)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from transfer_lab.models import attacks
from transfer_lab.models.attacks import AttackConfig, AttackError

log = logging.getLogger(__name__)

MODELS = ("classifier", "imagenet")
_IMAGE_EXT = {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
_ATTACK_KEYS = ("method", "epsilon", "step_size", "steps", "random_start", "early_stop", "confidence", "quantize", "batch_size", "seed")
_KNOWN = set(_ATTACK_KEYS) | {"model", "source", "target", "max_images", "max_panels", "robustness", "transfer", "image_size"}


# ------------------------------------------------------------------------------------------
# helpers


def _safe(name: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in str(name)) or "image"


def _as_int(value: Any, param: str, *, minimum: int, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    try:
        out = int(value)
        if out != float(value):
            raise ValueError
    except (TypeError, ValueError):
        raise AttackError(f"{param}={value!r} must be a whole number{' or null' if allow_none else ''}.") from None
    if out < minimum:
        raise AttackError(f"{param}={out} must be >= {minimum}{' (or null for no limit)' if allow_none else ''}.")
    return out


def _imagenet_names(backbone: Mapping[str, Any], labels: Any = None) -> list[str]:
    from transfer_lab.models.backbones import imagenet_class_names

    return imagenet_class_names(labels if labels is not None else backbone.get("imagenet_labels"))


def _true_set(label: Any, species: Any, class_names: list[str], groups: Mapping[str, tuple[int, ...]]) -> tuple[int, ...] | None:
    """The classes that count as correct for an image labelled ``label`` (species ``species``)."""
    for key in (label, species):
        if key is None or (isinstance(key, float) and math.isnan(key)) or str(key) == "":
            continue
        try:
            return attacks.class_set(str(key), class_names, "label", groups=groups or None)
        except ValueError:
            continue
    return None


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


def _build_model(plan: Mapping[str, Any], classifier: Callable[[], Any]) -> Any:
    if plan["model"] == "classifier":
        return classifier()
    from transfer_lab.models.backbones import build_imagenet_classifier

    net = plan["imagenet"]
    return build_imagenet_classifier(net["name"], net["weights"], image_size=net["image_size"], alpha=net["alpha"])


def _input_size(model: Any) -> int:
    return int(model.input_shape[1])


def _test_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    rows = manifest[manifest["split"].astype(str) == "test"]
    if "duplicate_of" in rows:
        dup = rows["duplicate_of"].fillna("").astype(str)
        rows = rows[dup == ""]
    return rows.reset_index(drop=True)


# ------------------------------------------------------------------------------------------
# node 1: parameters


def check_parameters(
    params: Mapping[str, Any],
    backbone: Mapping[str, Any],
    manifest: pd.DataFrame,
    class_names: Callable[[], Any],
) -> dict[str, Any]:
    """Validate every parameter before any model is built; return the resolved plan."""
    params = dict(params or {})
    unknown = set(params) - _KNOWN
    if unknown:
        raise AttackError(f"Unknown parameter(s) {', '.join('adversarial.' + k for k in sorted(unknown))}. Known: {', '.join(sorted(_KNOWN))}.")
    model = str(params.get("model", "classifier")).strip().lower()
    if model not in MODELS:
        raise AttackError(f"adversarial.model={params.get('model')!r}: use 'classifier' (the trained model) or 'imagenet'.")
    config = AttackConfig.from_params({k: params[k] for k in _ATTACK_KEYS if k in params})
    attacks.check_epsilon(config.epsilon, "adversarial.epsilon", quantize=config.quantize)
    if config.epsilon == 0:
        raise AttackError("adversarial.epsilon=0 allows no change at all: give a budget in 0-255 pixel units, e.g. 2.")

    imagenet = None
    if model == "imagenet":
        from transfer_lab.models.backbones import BackboneConfig

        cfg = BackboneConfig.from_params(backbone)
        size = params.get("image_size") or backbone.get("image_size") or cfg.spec.default_size
        imagenet = {"name": cfg.name, "weights": backbone.get("classifier_weights", "imagenet"),
                    "alpha": cfg.alpha, "image_size": _as_int(size, "adversarial.image_size", minimum=32)}
        names = _imagenet_names(backbone)
        groups: dict[str, tuple[int, ...]] = dict(attacks.IMAGENET_GROUPS)
    else:
        names = [str(c) for c in class_names()]
        groups = attacks.species_groups(attacks.species_of(manifest), names)

    target = params.get("target")
    target_set = None
    if target is not None and str(target).strip() != "":
        target_set = list(attacks.class_set(target, names, "adversarial.target", groups=groups))
    else:
        target = None

    source = params.get("source")
    source_files = [str(p) for p in _list_source(source)] if source not in (None, "") else None

    rob = dict(params.get("robustness") or {})
    rob_known = {"budgets", "method", "steps", "step_size", "max_images", "random_start"}
    if set(rob) - rob_known:
        raise AttackError(f"Unknown adversarial.robustness key(s) {', '.join(sorted(set(rob) - rob_known))}. Known: {', '.join(sorted(rob_known))}.")
    budgets = rob.get("budgets", [0, 0.5, 1, 2, 4, 8]) or []
    if not isinstance(budgets, (list, tuple)):
        raise AttackError(f"adversarial.robustness.budgets={budgets!r} must be a list of budgets in 0-255 units, e.g. [0, 1, 2, 4, 8].")
    budgets = sorted({attacks.check_epsilon(b, "adversarial.robustness.budgets", allow_below_one=True) for b in budgets})
    rob_cfg = AttackConfig(
        method=rob.get("method", "pgd"), epsilon=max(budgets) if budgets else 1.0, step_size=rob.get("step_size"),
        steps=rob.get("steps", 10), random_start=bool(rob.get("random_start", False)), quantize=config.quantize,
        batch_size=config.batch_size, seed=config.seed,
    ).validated("adversarial.robustness")

    transfer = params.get("transfer")
    if transfer:
        transfer = dict(transfer)
        t_known = {"name", "weights", "alpha", "labels", "image_size"}
        if set(transfer) - t_known:
            raise AttackError(f"Unknown adversarial.transfer key(s) {', '.join(sorted(set(transfer) - t_known))}. Known: {', '.join(sorted(t_known))}.")
        from transfer_lab.models.backbones import get_spec

        spec = get_spec(transfer.get("name", "mobilenet"))
        weights = transfer.get("weights", "imagenet")
        if weights not in (None, "imagenet") and not Path(str(weights)).expanduser().is_file():
            raise AttackError(
                f"adversarial.transfer.weights={weights!r} not found: give a Keras weights file of {spec.name} with its "
                "1000-class top (e.g. ../shared/weights/mobilenet_0.25_imagenet.weights.h5), or set adversarial.transfer=null."
            )
        labels = transfer.get("labels") or backbone.get("imagenet_labels")
        _imagenet_names(backbone, labels)  # fails now if the file is missing
        transfer = {"name": spec.name, "weights": weights, "alpha": float(transfer.get("alpha", 1.0) or 1.0),
                    "labels": labels, "image_size": transfer.get("image_size")}

    plan = {
        "model": model,
        "imagenet": imagenet,
        "class_names": names,
        "groups": {k: list(v) for k, v in groups.items()},
        "target": None if target is None else str(target),
        "target_set": target_set,
        "targeted": target_set is not None,
        "attack": config.describe() | {"batch_size": config.batch_size, "seed": config.seed},
        "source": None if source in (None, "") else str(source),
        "source_files": source_files,
        "max_images": _as_int(params.get("max_images"), "adversarial.max_images", minimum=1),
        "max_panels": _as_int(params.get("max_panels", 16), "adversarial.max_panels", minimum=0, allow_none=False),
        "robustness": {"budgets": budgets, "max_images": _as_int(rob.get("max_images", 200), "adversarial.robustness.max_images", minimum=1),
                       # step_size stays as given (null: epsilon/4 of each budget)
                       "attack": rob_cfg.describe() | {"step_size": rob_cfg.step_size, "batch_size": rob_cfg.batch_size, "seed": rob_cfg.seed}},
        "transfer": transfer or None,
    }
    what = f"targeted -> {target} (classes {target_set[:8]}{'...' if len(target_set) > 8 else ''})" if target_set else "untargeted"
    log.info("Attack: %s, %s, eps=%g/255, %d steps of %g, on the %s model.", config.method, what, config.epsilon, config.steps, config.alpha, model)
    return plan


def _config(d: Mapping[str, Any], **override: Any) -> AttackConfig:
    kw = {k: d[k] for k in ("method", "epsilon", "steps", "random_start", "early_stop", "confidence", "quantize", "batch_size", "seed") if k in d}
    kw["step_size"] = d.get("step_size")
    kw.update(override)
    return AttackConfig(**kw).validated()


# ------------------------------------------------------------------------------------------
# node 2: the attack


def attack_images(plan: Mapping[str, Any], manifest: pd.DataFrame, classifier: Callable[[], Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Attack the source images; return the adversarial images (saved as PNGs) and the records."""
    from transfer_lab.data.tfdata import load_batch
    from transfer_lab.runtime.devices import set_seed

    set_seed(plan["attack"]["seed"])
    model = _build_model(plan, classifier)
    size = _input_size(model)
    names = plan["class_names"]
    groups = {k: tuple(v) for k, v in plan["groups"].items()}
    target_set = tuple(plan["target_set"]) if plan["targeted"] else None

    if plan["source_files"] is None:
        rows = _test_rows(manifest)
        items = []
        for r in rows.itertuples(index=False):
            true = _true_set(getattr(r, "label", None), getattr(r, "species", None), names, groups)
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
        items = [(p, None, "") for p in plan["source_files"]]
    if plan["max_images"]:
        items = items[: plan["max_images"]]

    attack = attacks.PixelAttack(model)
    x = load_batch([p for p, _, _ in items], size)
    clean = attack.predict_logits(x)
    true_sets = [t if t is not None else (int(np.argmax(clean[i])),) for i, (_, t, _) in enumerate(items)]
    keep = np.ones(len(items), bool)
    if target_set is not None and plan["source_files"] is not None:
        keep = ~attacks.is_success(clean, attacks.set_mask([target_set] * len(items), len(names)), True)
        for i in np.flatnonzero(~keep):
            log.info("Skipping %s: the model already predicts the target (%s).", items[i][0], names[int(np.argmax(clean[i]))])
        if not keep.any():
            raise AttackError("Every source image is already classified as the target: nothing to attack.")
    items = [it for it, k in zip(items, keep) if k]
    x, true_sets = x[keep], [t for t, k in zip(true_sets, keep) if k]

    cfg = _config(plan["attack"])
    sets = [target_set] * len(x) if target_set is not None else true_sets
    result = attack.run(x, sets, targeted=plan["targeted"], config=cfg, progress=f"{cfg.method} eps={cfg.epsilon:g}")
    log.info("In-loop success %d/%d in %.1f s (%.3f s/image).", int(result.success.sum()), result.n, result.seconds, result.seconds / max(result.n, 1))

    img_names = [_safe(f"{i:04d}_{Path(p).stem}") for i, (p, _, _) in enumerate(items)]
    images = {n: result.adversarial[i].astype(np.uint8) for i, n in enumerate(img_names)}
    records = {
        "names": img_names,
        "paths": [p for p, _, _ in items],
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


def robustness_curve(plan: Mapping[str, Any], manifest: pd.DataFrame, classifier: Callable[[], Any]) -> dict[str, Any]:
    """Accuracy on the test split under untargeted PGD, for each budget."""
    from transfer_lab.data.tfdata import load_batch

    rob = plan["robustness"]
    if not rob["budgets"]:
        return {"budgets": [], "accuracy": [], "n_images": 0}
    model = _build_model(plan, classifier)
    names = plan["class_names"]
    groups = {k: tuple(v) for k, v in plan["groups"].items()}
    rows = _test_rows(manifest)
    items = []
    for r in rows.itertuples(index=False):
        true = _true_set(getattr(r, "label", None), getattr(r, "species", None), names, groups)
        if true is not None:
            items.append((str(r.path), true))
    if not items:
        log.warning("No labelled test image the model's classes cover: robust accuracy skipped.")
        return {"budgets": rob["budgets"], "accuracy": [None] * len(rob["budgets"]), "n_images": 0}
    rng = np.random.default_rng(rob["attack"]["seed"])
    if rob["max_images"] and len(items) > rob["max_images"]:
        pick = np.sort(rng.choice(len(items), rob["max_images"], replace=False))
        items = [items[i] for i in pick]
    attack = attacks.PixelAttack(model)
    x = load_batch([p for p, _ in items], _input_size(model))
    mask = attacks.set_mask([t for _, t in items], len(names))
    clean_ok = ~attacks.is_success(attack.predict_logits(x), mask, targeted=False)
    accuracy, seconds = [], []
    for eps in rob["budgets"]:
        if eps == 0 or (rob["attack"]["quantize"] and eps < 1):
            # No whole-pixel change fits in a budget under 1/255: the images are the clean ones.
            accuracy.append(float(clean_ok.mean()))
            seconds.append(0.0)
            continue
        cfg = _config(rob["attack"], epsilon=eps)
        # attack only what is still right: misclassified images are not robust anyway
        res = attack.run(x[clean_ok], mask[clean_ok], targeted=False, config=cfg, progress=f"robustness eps={eps:g}")
        accuracy.append(float((~res.success).sum() / len(x)))
        seconds.append(float(res.seconds))
        log.info("Robust accuracy at eps=%g/255: %.3f (%d images, %.1f s).", eps, accuracy[-1], len(x), res.seconds)
    attack_desc = {k: v for k, v in rob["attack"].items() if k not in ("epsilon", "step_size")}
    attack_desc["step_size"] = "epsilon/4 (at least 0.25)" if rob["attack"].get("step_size") is None else rob["attack"]["step_size"]
    return {"budgets": list(rob["budgets"]), "accuracy": accuracy, "n_images": len(x), "seconds": seconds,
            "attack": attack_desc}


# ------------------------------------------------------------------------------------------
# node 4: read the PNGs back, measure, transfer, figures


def _transfer_model(plan: Mapping[str, Any], size: int) -> tuple[Any, list[str]]:
    from transfer_lab.models.backbones import build_imagenet_classifier

    t = plan["transfer"]
    model = build_imagenet_classifier(t["name"], t["weights"], image_size=int(t.get("image_size") or size), alpha=t["alpha"],
                                      param="adversarial.transfer.weights")
    return model, _imagenet_names({}, t["labels"])


def _fit(model: Any, images: np.ndarray) -> np.ndarray:
    """Images resized to the model's input (only when the sizes differ), whole pixels."""
    size = tuple(int(d) for d in model.input_shape[1:3])
    if images.shape[1:3] == size:
        return images.astype(np.float32)
    import tensorflow as tf

    out = tf.image.resize(images.astype(np.float32), size, antialias=True).numpy()
    return np.clip(np.rint(out), 0, 255).astype(np.float32)


def _transfer(plan: Mapping[str, Any], records: Mapping[str, Any], adv: np.ndarray, fooled: np.ndarray) -> dict[str, Any] | None:
    """How many of the images that fooled the attacked model also fool a second model
    (``clean_rate``: how many the second model already put in the goal set before the attack)."""
    if not plan["transfer"]:
        return None
    model, names = _transfer_model(plan, int(adv.shape[1]))
    groups = dict(attacks.IMAGENET_GROUPS)
    src_names = plan["class_names"]
    label = f"{plan['transfer']['name']} alpha={plan['transfer']['alpha']:g} (ImageNet)"
    if plan["targeted"]:
        try:
            tset = attacks.class_set(plan["target"], names, "adversarial.target", groups=groups)
        except ValueError:
            log.warning("Target %r has no counterpart among the ImageNet classes: transfer rate skipped.", plan["target"])
            return {"model": label, "rate": None, "note": "the target is not an ImageNet class or group"}
        sets = [tset] * len(adv)
    else:
        sets = []
        for lab, true in zip(records["labels"], records["true_sets"]):
            key = lab or (src_names[true[0]] if true else "")
            try:
                sets.append(attacks.class_set(key, names, "label", groups=groups))
            except ValueError:
                sets.append(None)
    ok = np.array([s is not None for s in sets])
    mask = attacks.set_mask([s or () for s in sets], len(names))
    p_adv = np.asarray(model.predict(_fit(model, adv), verbose=0, batch_size=32))
    p_clean = np.asarray(model.predict(_fit(model, records["original"]), verbose=0, batch_size=32))
    # log-probabilities order the classes as the logits do
    succ = attacks.is_success(np.log(np.maximum(p_adv, 1e-30)), mask, plan["targeted"])
    base = attacks.is_success(np.log(np.maximum(p_clean, 1e-30)), mask, plan["targeted"])
    sel = fooled & ok
    return {
        "model": label,
        "n_images": int(sel.sum()),
        "rate": float(succ[sel].mean()) if sel.any() else None,
        "clean_rate": float(base[ok].mean()) if ok.any() else None,
    }


def report(
    plan: Mapping[str, Any],
    saved: Mapping[str, np.ndarray],
    records: Mapping[str, Any],
    robustness: Mapping[str, Any],
    classifier: Callable[[], Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    """Metrics measured on the saved PNGs read back with the project's decoder; figures."""
    from transfer_lab.reports import plots

    names_cls = plan["class_names"]
    missing = [n for n in records["names"] if n not in saved]
    if missing:
        raise AttackError(f"{len(missing)} adversarial PNGs are missing from the output folder (e.g. {missing[0]}). Run the pipeline again.")
    adv = np.stack([np.asarray(saved[n], np.float32) for n in records["names"]])
    orig = records["original"].astype(np.float32)
    model = _build_model(plan, classifier)
    z_adv = attacks.PixelAttack(model).predict_logits(adv)
    z_clean = records["clean_logits"]
    targeted = plan["targeted"]
    if targeted:
        goal_sets = [plan["target_set"]] * len(adv)
    else:
        goal_sets = records["true_sets"]
    mask = attacks.set_mask(goal_sets, len(names_cls))
    true_mask = attacks.set_mask(records["true_sets"], len(names_cls))
    success = attacks.is_success(z_adv, mask, targeted)
    p_clean, p_adv = attacks.softmax(z_clean), attacks.softmax(z_adv)
    linf, l2 = attacks.perturbation_norms(orig, adv)
    steps = np.asarray(records["steps"])
    already = attacks.is_success(z_clean, mask, targeted)
    tprob_b = (p_clean * mask).sum(1)
    tprob_a = (p_adv * mask).sum(1)
    trueprob_b = (p_clean * true_mask).sum(1)
    trueprob_a = (p_adv * true_mask).sum(1)

    transfer = _transfer(plan, records, adv, success)
    n = len(adv)
    cfg = records["config"]
    metrics: dict[str, Any] = {
        "model": plan["model"],
        "targeted": targeted,
        "target": plan["target"],
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
    for i in range(min(n, plan["max_panels"])):
        d = adv[i] - orig[i]
        scale = 127.5 / max(eps, 1.0)
        pert = np.clip(127.5 + d * scale, 0, 255)
        pc, pa = top(p_clean[i]), top(p_adv[i])
        titles = [f"original: {pc[0]} {pc[1]:.2f}", f"adversarial: {pa[0]} {pa[1]:.2f}",
                  f"perturbation x{scale:.0f} (Linf {linf[i]:.0f}, L2 {l2[i]:.0f})"]
        colors = ["black", "green" if success[i] else "red", "black"]
        figures[records["names"][i]] = plots.image_grid([orig[i], adv[i], pert], titles, ncols=3, cell=3.0, title_colors=colors)
        grid_imgs += [orig[i], adv[i], pert]
        grid_titles += [f"{pc[0]} {pc[1]:.2f}", f"{pa[0]} {pa[1]:.2f}", f"x{scale:.0f} Linf {linf[i]:.0f}"]
        grid_colors += colors
    if grid_imgs:
        what = f"-> {plan['target']}" if targeted else "untargeted"
        figures["grid"] = plots.image_grid(
            grid_imgs, grid_titles, ncols=6, cell=2.2, title_colors=grid_colors,
            suptitle=f"{cfg['method'].upper()} {what}, eps={eps:g}/255: {int(success.sum())}/{n} fool the model (saved PNGs)",
        )
    if robustness.get("budgets") and robustness.get("n_images"):
        ra = robustness["attack"]
        figures["robust_accuracy"] = plots.line_plot(
            robustness["budgets"], {f"{ra['method'].upper()}-{ra['steps']} untargeted": robustness["accuracy"]},
            xlabel="L-inf budget epsilon (0-255 pixel units)", ylabel="accuracy on the test split",
            title=f"Robust accuracy ({plan['model']} model, {robustness['n_images']} test images)",
        )
    return metrics, table, figures
