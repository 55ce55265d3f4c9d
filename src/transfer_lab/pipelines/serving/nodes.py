"""serving: the unfamiliar-photo statistics (on the training photos' cached features only) and
the MLflow serving model (decoder + classifier + statistics), registered per data set."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from transfer_lab.io import tracking
from transfer_lab.models import unfamiliar
from transfer_lab.models.choice import pick_classifier
from transfer_lab.params.data import DataParams
from transfer_lab.params.inference import InferenceParams, UnfamiliarParams

log = logging.getLogger(__name__)


def fit_unfamiliar_stats(features: dict[str, np.ndarray], head: Any,
                         params: UnfamiliarParams) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Fit ``unfamiliar.method`` on the training features; threshold on the validation ones."""
    for key in ("train_features", "train_labels", "val_features"):
        if key not in features:
            raise unfamiliar.UnfamiliarError(f"data/04_feature/features.npz lacks {key}. Run "
                                             "`kedro run --pipelines=feature_extraction,head_training`.")
    stats = unfamiliar.fit(features["train_features"], features["train_labels"], features["val_features"],
                           method=params.method, k=params.k, max_flagged=params.max_flagged,
                           head=unfamiliar.head_weights(head), seed=params.seed)
    out = unfamiliar.summary(stats)
    if len(features.get("test_features", [])):
        out["test_flagged"] = float(unfamiliar.flag(stats, features["test_features"])[0].mean())
    log.info("Unfamiliar flag (%s): threshold %.4f flags %.1f%% of the validation photos%s.", out["method"],
             out["threshold"], 100 * out["val_flagged"],
             f" and {100 * out['test_flagged']:.1f}% of the test photos" if "test_flagged" in out else "")
    return stats, out


def _test_accuracy(predictor: Any, features: dict[str, np.ndarray], pixel_cache: Any = None,
                   classifier: Any = None) -> float | None:
    """Accuracy of the serving predictor on the test photos (for a fine-tuned classifier).

    With the decoded-pixel cache (``runtime.pixel_cache``, filled by feature_extraction with the
    same decoder the predictor uses) the photos are not decoded again, and only the classifier runs
    (the unfamiliar flag plays no part in the accuracy)."""
    from transfer_lab.data.imaging import ImageRejected
    from transfer_lab.data.pixels import cached_pixels

    paths, labels = features.get("test_paths"), features.get("test_labels")
    if paths is None or not len(paths):
        return None
    if pixel_cache is not None and classifier is not None:
        try:
            from transfer_lab.models.predict import predict_array

            pixels = cached_pixels([str(p) for p in paths], int(predictor.size), pixel_cache, predictor.resize)
        except (ImageRejected, OSError, ValueError) as exc:
            log.info("Test photos not all in the pixel cache (%s): decoding them.", exc)
        else:
            probs = predict_array(classifier, pixels, batch_size=predictor.batch_size)
            return float(np.mean(np.argmax(probs, 1) == np.asarray(labels, int)))
    imgs, ys = [], []
    for p, y in zip(paths, labels):
        try:
            imgs.append(predictor.decode(open(str(p), "rb").read()))
            ys.append(int(y))
        except (ImageRejected, OSError):
            continue
    if not imgs:
        return None
    probs, _, _ = predictor.predict_arrays(np.stack(imgs))
    return float(np.mean(np.argmax(probs, 1) == np.asarray(ys)))


def log_serving_model(stats: dict[str, np.ndarray], config: dict[str, Any], head_metrics: dict[str, Any],
                      features: dict[str, np.ndarray], params: InferenceParams, data: DataParams,
                      finetuned: Any, head: Any, runtime: Any = None) -> dict[str, Any]:
    """Log decoder + ``inference.model`` classifier + unfamiliar statistics as one pyfunc model to
    the run and register it (``inference.log_model``), champion = best test accuracy."""
    from transfer_lab.data.imaging import resize_of
    from transfer_lab.serving import pyfunc
    from transfer_lab.serving.predictor import Predictor, pool_model

    max_pixels = int(params.max_pixels or data.max_pixels)
    classifier = pick_classifier(params.model, "inference.model", finetuned=finetuned, head=head)
    feature_model = pool_model(head()) if params.model == "finetuned" else None
    metrics = {k: v for k, v in head_metrics.items() if k in ("accuracy", "top3_accuracy", "n_test")}
    if params.model == "finetuned":
        predictor = Predictor(classifier, stats, config["class_names"], feature_model=feature_model,
                              max_pixels=max_pixels, resize=resize_of(config))
        from transfer_lab.data.pixels import pixel_cache_folder

        cache = pixel_cache_folder(runtime) if runtime is not None else None
        metrics = {"accuracy": _test_accuracy(predictor, features, cache, classifier)}
    serve_config = {**config, "resize": resize_of(config), "model": params.model, "max_pixels": max_pixels, "top_k": params.top_k,
                    "unfamiliar": unfamiliar.summary(stats)}
    info: dict[str, Any] = {"model": params.model, "test_accuracy": metrics.get("accuracy"), "logged": False}
    if not params.log_model or not tracking.active():
        log.info("Serving model not logged (%s).", "inference.log_model=false" if not params.log_model
                 else "no MLflow run")
        return info
    import mlflow

    run = mlflow.active_run()
    name = params.registered_model_name or pyfunc.registered_name(
        mlflow.get_experiment(run.info.experiment_id).name)
    out = pyfunc.log_model(classifier, stats, serve_config, feature_model=feature_model,
                           registered_model_name=name, test_metrics=metrics)
    info.update(out, logged=True, run_id=run.info.run_id)
    log.info("Serving model: models:/%s/%s (champion: version %s). Serve it with `mlflow models serve -m "
             "models:/%s@champion --env-manager local`.", name, out.get("version"), out.get("champion"), name)
    return info
