"""Distribution strategies for the trainers (SPEC §5).

- `make_strategy(name="default", cpu_replicas=0, intra_op_threads=0, inter_op_threads=0) -> tf.distribute.Strategy`
  "default" (one device), "mirrored" (all local devices; with `cpu_replicas=N` the CPU is split into N
  logical devices, one replica each), "multi_worker" (MultiWorkerMirroredStrategy from `TF_CONFIG`).
  Call it first thing in the process: logical devices, collectives and thread pools must be set before TF
  starts.
- `configure_threads(intra_op_threads, inter_op_threads)`: TF's thread pools (0 = TF's default, all cores
  for each). On 2 AVX2 cores the SBSGAN step's ops are small (8x4 to 64x32 maps): one thread per op and two
  ops at a time (intra 1, inter 2) trained 1.05-1.11x faster than TF's default (BUILD_NOTES.md, "Threads on
  2 cores").
- `is_chief(strategy)`: False only on a non-chief worker of a multi-worker strategy (it writes nothing real).
"""

import os

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multi_worker")


def _split_cpu(cpu_replicas):
    """Splits the first physical CPU into `cpu_replicas` logical devices (before TF initialises them)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    existing = tf.config.get_logical_device_configuration(cpu)
    if existing is not None and len(existing) == cpu_replicas:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(cpu_replicas)]
        )
    except RuntimeError as err:
        have = 1 if existing is None else len(existing)
        raise RuntimeError(
            f"`cpu_replicas={cpu_replicas}` needs the CPU split into {cpu_replicas} logical devices, but "
            f"TensorFlow already initialised its devices with {have} logical CPU(s). Call make_strategy "
            f"before any other TensorFlow work in the process."
        ) from err


def configure_threads(intra_op_threads=0, inter_op_threads=0):
    """Sets TF's intra-/inter-op thread pools (0 = leave TF's default). TF fixes them when it starts: a later
    request for other values raises a RuntimeError naming the flags (an equal one passes)."""
    threading = tf.config.threading
    wanted = {"intra_op_threads": int(intra_op_threads), "inter_op_threads": int(inter_op_threads)}
    if any(value < 0 for value in wanted.values()):
        raise ValueError(f"thread counts must be >= 0 (0 = TF's default). Received: {wanted}")
    setters = {"intra_op_threads": (threading.get_intra_op_parallelism_threads,
                                    threading.set_intra_op_parallelism_threads),
               "inter_op_threads": (threading.get_inter_op_parallelism_threads,
                                    threading.set_inter_op_parallelism_threads)}
    for key, value in wanted.items():
        get, put = setters[key]
        if not value or get() == value:
            continue
        try:
            put(value)
        except RuntimeError as err:
            raise RuntimeError(f"--{key}={value}: TensorFlow already started with {get() or 'its default'}; "
                               "thread pools must be set before TensorFlow's first op (run the trainer in a "
                               "process of its own)") from err


def make_strategy(name="default", cpu_replicas=0, intra_op_threads=0, inter_op_threads=0):
    """Returns the tf.distribute strategy `name` ("default" | "mirrored" | "multi_worker"), after setting the
    thread pools (`configure_threads`).

    `cpu_replicas=N` (N >= 1) first splits the CPU into N logical devices; "mirrored" then runs one
    replica per logical CPU (on a machine with GPUs leave it 0 to mirror over the GPUs).
    "multi_worker" reads the cluster from the `TF_CONFIG` environment variable.
    """
    if name not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}. Received: strategy={name!r}")
    if cpu_replicas < 0:
        raise ValueError(f"`cpu_replicas` must be >= 0. Received: cpu_replicas={cpu_replicas}")
    configure_threads(intra_op_threads, inter_op_threads)
    if cpu_replicas:
        _split_cpu(cpu_replicas)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("`strategy='multi_worker'` needs the TF_CONFIG environment variable (cluster "
                             "and task); it is not set.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if tf.config.list_physical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    # CPU only: one replica per logical CPU, all-reduce through one device (NCCL needs GPUs).
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())


def is_multi_worker(strategy):
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy):
    """True unless this process is a non-chief worker of a multi-worker strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None:
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return task_type is None or task_type == "chief" or (not has_chief and task_type == "worker" and task_id == 0)
