"""Project hooks: say once which device runs the work, and log it to MLflow."""

from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

log = logging.getLogger("transfer_lab")


class TransferLabHooks:
    def __init__(self) -> None:
        self._device: dict[str, Any] | None = None
        self._logged = False

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._logged = False
        if not any(_needs_tensorflow(n) for n in pipeline.nodes):
            return
        from transfer_lab.runtime import describe_devices

        self._device = describe_devices()
        log.info("Running on %s (TensorFlow %s)", self._device["device"], self._device["tensorflow"])

    @hook_impl
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> None:
        # kedro-mlflow opens the MLflow run in its own before_pipeline_run: log once it exists.
        if self._logged or self._device is None:
            return
        from transfer_lab import tracking

        if tracking.active():
            tracking.set_tags({"device": self._device["device"], "n_gpus": self._device["n_gpus"]})
            self._logged = True


def _needs_tensorflow(node: Any) -> bool:
    return (node.namespace or "").split(".")[0] not in ("data_ingestion",)
