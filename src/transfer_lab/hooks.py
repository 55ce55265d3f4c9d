"""Project hooks: say once which device runs the work, and log it to MLflow."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

log = logging.getLogger("transfer_lab")


DEFAULT_EXPERIMENT = "transfer_lab"


def experiment_name(source: str, labels: str, layout: str = "auto") -> str:
    """One MLflow experiment per data set and task, e.g. ``PetImages-species``, ``oxford-iiit-pet-breed``."""
    from pathlib import PurePosixPath
    from urllib.parse import urlparse

    from transfer_lab.data.sources import ARCHIVE_SUFFIXES, KNOWN_CHECKSUMS

    text = str(source).rstrip("/")
    if text in KNOWN_CHECKSUMS:  # the official Oxford-IIIT Pet archive
        name = "oxford-iiit-pet"
    else:
        name = PurePosixPath(urlparse(text).path if "://" in text else text).name or "photos"
        for suffix in ARCHIVE_SUFFIXES:
            if name.lower().endswith(suffix):
                name = name[: -len(suffix)]
        if name.lower() == "images":  # .../oxford-iiit-pet/images
            name = PurePosixPath(text).parent.name or name
    if name.lower() == "petimages" or layout == "pet_images":
        labels = "species"  # that layout has no breeds
    return f"{name}-{labels}"


class TransferLabHooks:
    def __init__(self) -> None:
        self._device: dict[str, Any] | None = None
        self._logged = False

    @hook_impl
    def after_context_created(self, context: Any) -> None:
        """Name the MLflow experiment after the data set and task (kedro-mlflow has set it up already)."""
        self._runtime_params = dict(context.params.get("runtime") or {})
        cfg = getattr(context, "mlflow", None)
        from transfer_lab.runtime.cluster import is_chief

        if cfg is not None and not is_chief():
            # Multi-worker training: only the chief opens an MLflow run (kedro-mlflow skips
            # pipelines listed as disabled; the datasets and tracking helpers skip writes too).
            from kedro.framework.project import pipelines

            cfg.tracking.disable_tracking.pipelines = sorted(set(pipelines) | {"__default__"})
            log.info("Not the chief worker (TF_CONFIG): no MLflow run and no catalog writes from this process.")
            return
        if cfg is None or cfg.tracking.experiment.name != DEFAULT_EXPERIMENT:
            return  # kedro-mlflow not active, or the user named the experiment in mlflow.yml
        try:
            import mlflow

            if mlflow.active_run() is not None:
                return
            data = dict(context.params.get("data") or {})
            runtime = (getattr(context, "_runtime_params", None) or {}).get("data") or {}
            if "source" not in runtime:
                # Pipelines that don't ingest work on whatever data_ingestion last wrote.
                summary = context.project_path / "data" / "08_reporting" / "ingestion_summary.json"
                if summary.exists():
                    import json

                    data.update({k: v for k, v in json.loads(summary.read_text()).items()
                                 if k in ("source", "labels", "layout")})
            cfg.tracking.experiment.name = experiment_name(
                data.get("source", ""), data.get("labels", "breed"), data.get("layout", "auto")
            )
            cfg._set_experiment()
        except Exception as exc:  # never block a run on naming
            log.warning("Could not name the MLflow experiment after the data set (%s); using %s.",
                        exc, cfg.tracking.experiment.name)

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._logged = False
        from transfer_lab.runtime.cluster import is_chief

        if not is_chief():
            _skip_saves(pipeline, catalog)
        if not any(_needs_tensorflow(n) for n in pipeline.nodes):
            return
        from transfer_lab.runtime.devices import describe_devices

        self._device = describe_devices()
        log.info("Running on %s (TensorFlow %s)", self._device["device"], self._device["tensorflow"])
        # Strategy, precision and logical devices must be set before TensorFlow does any work.
        from transfer_lab.runtime.strategy import setup_runtime

        self._runtime = setup_runtime(getattr(self, "_runtime_params", None) or {})
        log.info("Runtime: %s", self._runtime.summary())

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> None:
        # kedro-mlflow opens the MLflow run in its own before_pipeline_run: log once it exists.
        if self._logged or self._device is None:
            return
        from transfer_lab.io import tracking

        if tracking.active():
            tracking.set_tags({"device": self._device["device"], "n_gpus": self._device["n_gpus"]})
            if getattr(self, "_runtime", None) is not None:
                self._runtime.log()  # strategy, replicas, precision, XLA as runtime.used.* params + tags
            self._logged = True


def _skip_saves(pipeline: Any, catalog: Any) -> None:
    """Non-chief workers of a multi-worker run write nothing: every dataset the pipeline produces
    is kept in memory instead (later nodes still get it), whatever its type."""
    from kedro.io import MemoryDataset

    names = set(catalog.keys())
    for name in sorted(pipeline.all_outputs()):
        if name in names and not name.startswith("params:") and name != "parameters":
            catalog[name] = MemoryDataset(copy_mode="assign")


def _needs_tensorflow(node: Any) -> bool:
    return (node.namespace or "").split(".")[0] not in ("data_ingestion",)
