"""Scale-out runtime: TensorFlow distribution strategy, mixed precision and XLA, from the
``runtime:`` parameters (conf/base/parameters_runtime.yml).

One call, :func:`setup_runtime`, turns those parameters into a :class:`Runtime`:

- ``strategy``: ``auto`` (``MirroredStrategy`` over the GPUs when more than one is visible,
  ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` describes a cluster of several tasks, the
  default strategy otherwise) | ``mirrored`` (all local GPUs, or all logical CPU devices) |
  ``multi_worker`` (``MultiWorkerMirroredStrategy``, cluster from ``TF_CONFIG``) | ``none``.
- ``mixed_precision``: ``auto`` (``mixed_float16`` on GPUs of compute capability 7.0 or more,
  float32 elsewhere) | ``on`` (``mixed_float16``) | ``off`` | an explicit Keras policy name
  (``mixed_bfloat16`` is the one that helps on recent CPUs). The project's heads end in an
  Activation ``probabilities`` with ``dtype="float32"``, so the softmax stays float32.
- ``jit_compile``: ``auto`` | ``true`` | ``false`` (XLA), passed to ``model.compile``.
- ``cpu_devices``: split the CPU into this many logical devices (tests and benches; it must be set
  before TensorFlow initialises its devices, i.e. at the start of a process).

The project hook (:mod:`transfer_lab.hooks`) calls :func:`setup_runtime` before the first node runs
(a ``MultiWorkerMirroredStrategy`` must exist before TensorFlow does any work), and nodes get the
same object back by calling it again with ``params:runtime``.

Only the chief writes: :func:`is_chief` reads ``TF_CONFIG`` (the ``chief`` task, or worker 0 when
the cluster has no chief). The project's datasets and :mod:`transfer_lab.io.tracking` skip writes on
other workers, and the hook keeps kedro-mlflow from opening a run there.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from transfer_lab.params.runtime import RuntimeParams
from transfer_lab.runtime.cluster import DistributeError, cluster_size, is_chief, task, tf_config

__all__ = ["DistributeError", "Runtime", "RuntimeParams", "choose_precision", "choose_strategy", "current", "is_chief",
           "setup_runtime", "split_cpu"]

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# The runtime
# --------------------------------------------------------------------------------------------


@dataclass
class Runtime:
    """What runs the work: the strategy and its replicas, the precision policy, XLA, the task."""

    config: RuntimeParams
    strategy: Any  # tf.distribute.Strategy
    strategy_name: str  # default | mirrored | multi_worker
    replicas: int
    workers: int
    task_type: str
    task_index: int
    chief: bool
    precision: str  # float32 | mixed_float16 | mixed_bfloat16
    jit_compile: Any
    device: str
    devices: list[str] = field(default_factory=list)

    @property
    def on_gpu(self) -> bool:
        """Whether this runtime's devices are GPUs."""
        return any("GPU:" in d.upper() for d in self.devices)

    @property
    def is_chief(self) -> bool:
        return self.chief

    @property
    def distributed(self) -> bool:
        return self.replicas > 1 or self.workers > 1

    def scope(self) -> Any:
        """``with rt.scope(): build and compile models``."""
        return self.strategy.scope()

    def global_batch(self, per_replica: int) -> int:
        """The global batch: the per-replica batch times the replicas (across all workers)."""
        return int(per_replica) * int(self.replicas)

    def shard(self, dataset: Any) -> Any:
        """Input sharded per worker (by element: the project's datasets are built from in-memory
        path lists, not files), and no warning about it."""
        import tensorflow as tf

        opts = tf.data.Options()
        opts.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.DATA if self.workers > 1 else tf.data.experimental.AutoShardPolicy.OFF
        )
        return dataset.with_options(opts)

    def replicate(self, model: Any, *, copy: bool = False) -> Any:
        """``model`` again, built inside this strategy's scope with the same weights (a model loaded
        by the catalog lives outside it). Returned as is when there is nothing to distribute,
        unless ``copy`` (a node that trains it must not change its input)."""
        if not copy and not self.distributed and self.strategy_name == "default":
            return model
        import keras

        from transfer_lab.models.backbones import all_layers

        with self.scope():
            clone = keras.models.clone_model(model)
            clone.set_weights(model.get_weights())
        for src, dst in zip(all_layers(model), all_layers(clone)):
            dst.trainable = src.trainable
        try:
            clone.name = model.name
        except Exception:  # pragma: no cover - read-only name on some versions
            pass
        return clone

    def describe(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy_name,
            "replicas": self.replicas,
            "workers": self.workers,
            "task": f"{self.task_type}:{self.task_index}",
            "chief": self.chief,
            "precision": self.precision,
            "jit_compile": self.jit_compile,
            "device": self.device,
            "devices": ", ".join(self.devices),
        }

    def summary(self) -> str:
        d = self.describe()
        return (f"{d['device']}: strategy {d['strategy']} with {d['replicas']} replica(s) on {d['workers']} "
                f"worker(s) (this is {d['task']}{', chief' if d['chief'] else ''}), precision {d['precision']}, "
                f"XLA {d['jit_compile']}")

    def log(self) -> None:
        """Print the runtime and log it to the active MLflow run (params ``runtime.*`` + tags)."""
        log.debug("Runtime: %s", self.summary())
        from transfer_lab.io import tracking

        d = self.describe()
        tracking.log_params({f"used.{k}": v for k, v in d.items() if k != "devices"}, prefix="runtime")
        tracking.set_tags({"strategy": self.strategy_name, "replicas": self.replicas,
                           "precision": self.precision, "workers": self.workers})


_CURRENT: Runtime | None = None


def current() -> Runtime | None:
    """The runtime set up in this process, if any."""
    return _CURRENT



def split_cpu(n: int) -> bool:
    """Split the first CPU into ``n`` logical devices. Must run before TensorFlow initialises its
    devices; returns False (and changes nothing) when that already happened with another split."""
    import tensorflow as tf

    cpus = tf.config.list_physical_devices("CPU")
    try:
        current_cfg = tf.config.get_logical_device_configuration(cpus[0]) or []
        if len(current_cfg) == n or (n == 1 and not current_cfg):
            return True
        tf.config.set_logical_device_configuration(cpus[0], [tf.config.LogicalDeviceConfiguration()] * n)
        return True
    except RuntimeError:
        return len(tf.config.list_logical_devices("CPU")) == n


def _gpu_names_and_capability() -> tuple[list[str], list[tuple[int, int]]]:
    import tensorflow as tf

    names, caps = [], []
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            details = tf.config.experimental.get_device_details(gpu)
        except Exception:
            details = {}
        names.append(details.get("device_name", gpu.name))
        cc = details.get("compute_capability")
        caps.append(tuple(cc) if cc else (0, 0))
    return names, caps


def choose_precision(mode: str, capabilities: list[tuple[int, int]]) -> str:
    """The Keras dtype policy for ``runtime.mixed_precision``."""
    if mode in ("float32", "mixed_float16", "mixed_bfloat16"):
        return mode
    if mode == "off":
        return "float32"
    if mode == "on":
        return "mixed_float16"
    # auto: float16 only pays off with tensor cores (compute capability 7.0+)
    return "mixed_float16" if capabilities and all(c >= (7, 0) for c in capabilities) else "float32"


def choose_strategy(mode: str, n_gpus: int, n_tasks: int) -> str:
    if mode == "auto":
        if n_tasks > 1:
            return "multi_worker"
        return "mirrored" if n_gpus > 1 else "default"
    return "default" if mode == "none" else mode


def setup_runtime(params: RuntimeParams | Mapping[str, Any] | None = None, *, log_it: bool = False) -> Runtime:
    """The :class:`Runtime` for the ``runtime`` parameters (a :class:`RuntimeParams`, or a mapping
    validated into one; ``None`` = the defaults). Created once per process: a later call with the
    same parameters returns the same object (a multi-worker strategy can exist only once)."""
    global _CURRENT
    cfg = params if isinstance(params, RuntimeParams) else RuntimeParams.model_validate(dict(params or {}))
    if _CURRENT is not None and _CURRENT.config == cfg:
        _apply_policy(_CURRENT.precision)
        return _CURRENT

    import tensorflow as tf

    from transfer_lab.runtime.quiet import quiet_tensorflow

    quiet_tensorflow()
    if cfg.cpu_devices and not split_cpu(cfg.cpu_devices):
        log.warning("runtime.cpu_devices=%d ignored: TensorFlow already initialised its devices in this process "
                    "(it can only be set at the start of a process).", cfg.cpu_devices)
    gpu_names, caps = _gpu_names_and_capability()
    n_tasks = cluster_size()
    name = choose_strategy(cfg.strategy, len(gpu_names), n_tasks)
    kind, index = task()
    if name == "multi_worker":
        if n_tasks < 2 and not tf_config():
            log.warning("runtime.strategy=multi_worker without TF_CONFIG: one worker (set TF_CONFIG on every "
                        "machine to train on several).")
        strategy = _multi_worker_strategy()
    elif name == "mirrored":
        if gpu_names:
            devices = [d.name for d in tf.config.list_logical_devices("GPU")]
            strategy = tf.distribute.MirroredStrategy(devices=devices)
        else:
            devices = [d.name for d in tf.config.list_logical_devices("CPU")]
            strategy = tf.distribute.MirroredStrategy(
                devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
    else:
        strategy = tf.distribute.get_strategy()
    replicas = int(strategy.num_replicas_in_sync)
    precision = choose_precision(cfg.mixed_precision, caps)
    if precision == "mixed_float16" and not gpu_names:
        log.warning("runtime.mixed_precision: mixed_float16 on a CPU is slow (no float16 units); use off or "
                    "mixed_bfloat16 there.")
    _apply_policy(precision)
    n_workers = n_tasks if name == "multi_worker" else 1
    if name == "multi_worker":  # this worker's own devices (listing them first would initialise TF too early)
        devices = list(strategy.extended.worker_devices)
    else:
        devices = [d.name for d in tf.config.list_logical_devices("GPU" if gpu_names else "CPU")]
    device = ("GPU: " + ", ".join(gpu_names)) if gpu_names else f"CPU ({os.cpu_count()} cores, {len(devices)} logical device(s))"
    rt = Runtime(
        config=cfg, strategy=strategy, strategy_name=name, replicas=replicas, workers=n_workers,
        task_type=kind, task_index=index, chief=is_chief(), precision=precision,
        jit_compile=cfg.jit_compile, device=device, devices=devices,
    )
    _CURRENT = rt
    if log_it:
        rt.log()
    return rt


def _apply_policy(precision: str) -> None:
    import keras

    if keras.mixed_precision.global_policy().name != precision:
        keras.mixed_precision.set_global_policy(precision)


_KERAS_PATCHED = False


def _keras_multi_worker_fixes() -> None:
    """Work around two Keras 3 bugs that stop ``fit`` under MultiWorkerMirroredStrategy
    (https://github.com/keras-team/keras/issues/20585), in this process only:

    - ``_maybe_symbolic_build`` all-reduces a whole input batch eagerly just to learn its shapes,
      which the collective strategy refuses: take this worker's first local replica instead.
    - ``reduce_per_replica(..., "mean")`` reduces scalar logs along axis 0: reduce them whole.
    """
    global _KERAS_PATCHED
    if _KERAS_PATCHED:
        return
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    build, reduce_per_replica = tf_trainer.TensorFlowTrainer._maybe_symbolic_build, tf_trainer.reduce_per_replica

    def local_value(strategy: Any, x: Any) -> Any:
        return strategy.experimental_local_results(x)[0] if isinstance(x, tf.distribute.DistributedValues) else x

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        if self._distribute_strategy is None or iterator is None or data_batch is not None or \
                not tf_trainer._collective_all_reduce_multi_worker(self._distribute_strategy):
            return build(self, iterator=iterator, data_batch=data_batch)
        for _, _, it in iterator:
            data_batch = tree.map_structure(lambda x: local_value(self.distribute_strategy, x), next(it))
            break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def reduce(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("mean", "auto") and tf_trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return reduce_per_replica(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce
    _KERAS_PATCHED = True


def _multi_worker_strategy() -> Any:
    import tensorflow as tf

    _keras_multi_worker_fixes()
    try:
        return tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=tf.distribute.experimental.CommunicationOptions(
                implementation=tf.distribute.experimental.CommunicationImplementation.RING))
    except RuntimeError as exc:
        raise DistributeError(
            f"Could not start MultiWorkerMirroredStrategy ({exc}). It must be created before TensorFlow does any "
            "work in the process: run through `kedro run` (the project hook creates it first), or call "
            "transfer_lab.runtime.strategy.setup_runtime at the start of your script."
        ) from exc

