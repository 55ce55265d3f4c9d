"""Project hooks: refuse ``--params`` keys that are not parameters, name the MLflow experiment after
the data set, set up the TensorFlow runtime and say once which device runs the work."""

from __future__ import annotations

import logging
from pathlib import PurePosixPath
from typing import Any, Mapping
from urllib.parse import urlparse

from kedro.framework.hooks import hook_impl
from pydantic import BaseModel

from transfer_lab.data.sources import ARCHIVE_SUFFIXES, KNOWN_CHECKSUMS
from transfer_lab.params import SECTIONS, unknown_key_message
from transfer_lab.runtime.cluster import is_chief

log = logging.getLogger("transfer_lab")

DEFAULT_EXPERIMENT = "transfer_lab"


class UnknownParameterError(ValueError):
    """A ``--params`` key that names no parameter of the project."""


def experiment_name(source: str, labels: str, layout: str = "auto") -> str:
    """One MLflow experiment per data set and task, e.g. ``PetImages-species``, ``oxford-iiit-pet-breed``."""
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


def _plain(value: Any) -> dict[str, Any]:
    """A parameter section as a plain dict, whether Kedro handed it over validated (a model) or raw."""
    if isinstance(value, BaseModel):
        return value.model_dump()
    return dict(value or {})


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The Pydantic model inside a field's type (``X``, ``X | None``, ``Optional[X]``), if any."""
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def unknown_parameters(overrides: Mapping[str, Any], sections: Mapping[str, type[BaseModel]] = SECTIONS,
                       conf: Mapping[str, Any] | None = None) -> list[str]:
    """One message per key of ``overrides`` (nested, as ``--params "a.b=1"`` gives them) that names no
    field of the section models; empty when every key is a parameter. A section of the YAML ``conf``
    that has no model (yet) is checked against its YAML keys."""
    problems: list[str] = []
    conf = conf or {}

    def walk_yaml(known: Mapping[str, Any], values: Mapping[str, Any], where: str) -> None:
        for key, value in values.items():
            if key not in known:
                problems.append(unknown_key_message(str(key), [str(k) for k in known], where, None))
            elif isinstance(known[key], Mapping) and known[key] and isinstance(value, Mapping):
                walk_yaml(known[key], value, f"{where}.{key}")

    def walk(model: type[BaseModel], values: Mapping[str, Any], where: str, conf_file: str | None) -> None:
        fields = model.model_fields
        names = list(fields) + [f.alias for f in fields.values() if f.alias]
        for key, value in values.items():
            if key not in names:
                problems.append(unknown_key_message(str(key), list(fields), where, conf_file))
                continue
            inner = _model_of(fields[key].annotation) if key in fields else None
            if inner is not None and isinstance(value, Mapping):
                walk(inner, value, f"{where}.{key}", conf_file)

    for name, values in overrides.items():
        model = sections.get(name)
        if model is None and isinstance(conf.get(name), Mapping):
            if isinstance(values, Mapping):
                walk_yaml(conf[name], values, name)
        elif model is None:
            problems.append(unknown_key_message(str(name), sorted(set(sections) | set(conf)), "", None))
        elif isinstance(values, Mapping):
            walk(model, values, name, getattr(model, "conf_file", None))
    return problems


def check_overrides(overrides: Mapping[str, Any] | None, conf: Mapping[str, Any] | None = None) -> None:
    """Raise :class:`UnknownParameterError` naming every ``--params`` key that is not a parameter."""
    problems = unknown_parameters(overrides or {}, SECTIONS, conf)
    if problems:
        raise UnknownParameterError("Nothing was run: " + " ".join(problems))


class TransferLabHooks:
    def __init__(self) -> None:
        self._context: Any = None
        self._conf: dict[str, Any] = {}
        self._device: dict[str, Any] | None = None
        self._runtime: Any = None
        self._logged = False
        self._timings = RunTimings()

    @hook_impl(tryfirst=True)
    def after_context_created(self, context: Any) -> None:
        """Refuse misspelt ``--params`` keys before Kedro builds the catalog or validates anything."""
        self._context = context
        overrides = context.config_loader.runtime_params
        if overrides:
            self._conf = _conf_parameters(context)
            check_overrides(overrides, self._conf)

    @hook_impl(tryfirst=True)  # before kedro-mlflow's, which opens the MLflow run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        check_overrides(run_params.get("runtime_params"), self._conf)
        self._logged = False
        self._timings = RunTimings()
        cfg = getattr(self._context, "mlflow", None)  # kedro-mlflow's config (its public attribute)
        if not is_chief():
            # Multi-worker training: only the chief opens an MLflow run and writes files.
            if cfg is not None:
                cfg.tracking.disable_tracking.pipelines = sorted(set(run_params.get("pipeline_names") or [])
                                                                 | {"__default__"})
            _skip_saves(pipeline, catalog)
            log.info("Not the chief worker (TF_CONFIG): no MLflow run and no catalog writes from this process.")
        elif cfg is not None and cfg.tracking.experiment.name == DEFAULT_EXPERIMENT:
            self._name_experiment(cfg, pipeline, catalog, run_params)
        if not any(_needs_tensorflow(n) for n in pipeline.nodes):
            return
        from transfer_lab.runtime.devices import describe_devices
        from transfer_lab.runtime.strategy import setup_runtime

        self._device = describe_devices()
        log.info("Running on %s (TensorFlow %s)", self._device["device"], self._device["tensorflow"])
        # Strategy, precision and logical devices must be set before TensorFlow does any work.
        runtime = catalog.load("params:runtime") if "params:runtime" in catalog else {}
        self._runtime = setup_runtime(_plain(runtime))
        log.info("Runtime: %s", self._runtime.summary())

    def _name_experiment(self, cfg: Any, pipeline: Any, catalog: Any, run_params: dict[str, Any]) -> None:
        """Name the MLflow experiment after the data set and task: the data this run ingests, or, for
        pipelines that do not ingest, the data data_ingestion last wrote (its ingestion_summary)."""
        try:
            import mlflow

            if mlflow.active_run() is not None:
                return  # an orchestrator opened the run: kedro-mlflow uses its experiment
            data = _plain(catalog.load("params:data")) if "params:data" in catalog else {}
            ingests = any((n.namespace or "").split(".")[0] == "data_ingestion" for n in pipeline.nodes)
            given = "source" in ((run_params.get("runtime_params") or {}).get("data") or {})
            if not ingests and not given and "ingestion_summary" in catalog and catalog.exists("ingestion_summary"):
                summary = catalog.load("ingestion_summary")
                data.update({k: summary[k] for k in ("source", "labels", "layout") if k in summary})
            cfg.tracking.experiment.name = experiment_name(
                data.get("source", ""), data.get("labels", "breed"), data.get("layout", "auto"))
            cfg.setup(self._context)  # kedro-mlflow's public set-up: creates and selects the experiment
        except Exception as exc:  # never block a run on naming
            log.warning("Could not name the MLflow experiment after the data set (%s); using %s.",
                        exc, cfg.tracking.experiment.name)

    @hook_impl(trylast=True)  # after kedro-mlflow's, which reopens the run in the node's thread
    def before_node_run(self, node: Any, catalog: Any, inputs: dict[str, Any]) -> None:
        from transfer_lab.io import tracking

        self._timings.start(node)
        if not tracking.active():
            return
        # Kedro hands validated parameters to the nodes as Pydantic models, which kedro-mlflow
        # logs as one string: log each field as ``section.key`` (the names the YAML files use).
        for name, value in inputs.items():
            if name.startswith("params:") and isinstance(value, BaseModel):
                tracking.log_params(value.model_dump(mode="json"), prefix=name[len("params:"):])
        # kedro-mlflow opens the MLflow run in its own before_pipeline_run: log once it exists.
        if self._logged or self._device is None:
            return
        tracking.set_tags({"device": self._device["device"], "n_gpus": self._device["n_gpus"]})
        if self._runtime is not None:
            self._runtime.log()  # strategy, replicas, precision, XLA as runtime.used.* params + tags
        self._logged = True

    @hook_impl
    def after_node_run(self, node: Any, catalog: Any) -> None:
        self._timings.stop(node)
        if TIMINGS in catalog:
            try:
                catalog.save(TIMINGS, self._timings.report())
            except Exception as exc:  # never fail a run on its timings
                log.warning("Could not write the run's timings (%s): %s", TIMINGS, exc)


#: The catalog entry the hook writes the run's seconds per pipeline to.
TIMINGS = "run_timings"


class RunTimings:
    """Wall-clock seconds of a run's nodes, summed per pipeline (a node's namespace's first part)."""

    def __init__(self) -> None:
        import datetime as dt
        import time

        self._clock = time.perf_counter
        self.started = dt.datetime.now().isoformat(timespec="seconds")
        self._t0 = self._clock()
        self._open: dict[str, float] = {}
        self.per_pipeline: dict[str, float] = {}

    def start(self, node: Any) -> None:
        self._open[node.name] = self._clock()

    def stop(self, node: Any) -> None:
        began = self._open.pop(node.name, None)
        if began is None:
            return
        pipeline = (node.namespace or "").split(".")[0] or "(no pipeline)"
        self.per_pipeline[pipeline] = self.per_pipeline.get(pipeline, 0.0) + self._clock() - began

    def report(self) -> dict[str, Any]:
        return {"started": self.started, "pipeline_s": {k: round(v, 2) for k, v in self.per_pipeline.items()},
                "total_s": round(self._clock() - self._t0, 2)}


def _conf_parameters(context: Any) -> dict[str, Any]:
    """The project's parameters as the YAML files give them, without the ``--params`` overrides."""
    from kedro.framework.project import settings

    loader = context.config_loader
    plain = settings.CONFIG_LOADER_CLASS(conf_source=loader.conf_source, env=loader.env,
                                         **settings.CONFIG_LOADER_ARGS)
    try:
        return dict(plain["parameters"])
    except Exception:  # no parameters at all
        return {}


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
