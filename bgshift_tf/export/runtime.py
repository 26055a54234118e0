"""How the exported models run: the thread and optimisation settings every format's runner takes.

The defaults are the fast settings (issue 16), each overridable by a flag of `python -m bgshift_tf.export`
and of the export benchmark:

    num_threads       intra-op threads: TFLite interpreter threads, ONNX Runtime intra_op_num_threads,
                      TensorFlow intra-op parallelism (default: every core of the machine)
    inter_op_threads  ONNX Runtime inter_op_num_threads and TensorFlow inter-op parallelism (default 1: the
                      models are one chain of convolutions, so parallel branches gain nothing)
    xnnpack           TFLite with its XNNPACK delegate (default on; off = the built-in kernels only)
    ort_optimization  ONNX Runtime graph optimisation level: disable, basic, extended or all (default all)

TensorFlow's threading is process-wide and fixed at its first op, so `configure_tensorflow` must run before
any model is built (the export and benchmark entry points call it first); afterwards it can only check.
"""

import dataclasses
import os

import tensorflow as tf

ORT_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")


def machine_cores():
    """CPU cores this process may use (the affinity mask when the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    """Thread and optimisation settings of the runners; see the module docstring for each field."""

    num_threads: int = dataclasses.field(default_factory=machine_cores)
    inter_op_threads: int = 1
    xnnpack: bool = True
    ort_optimization: str = "all"

    def __post_init__(self):
        for name in ("num_threads", "inter_op_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"`{name}` (--{name}) must be a positive integer. Received: {name}={value!r}")
        if self.ort_optimization not in ORT_OPTIMIZATION_LEVELS:
            raise ValueError(f"`ort_optimization` (--ort_optimization) must be one of {ORT_OPTIMIZATION_LEVELS}. "
                             f"Received: ort_optimization={self.ort_optimization!r}")


def configure_tensorflow(options):
    """Sets TensorFlow's intra/inter-op threads from `options`.

    Before TensorFlow has run an op the threads are set; afterwards they cannot change, so a differing
    request raises a RuntimeError naming both values (an equal one passes).
    """
    threading = tf.config.threading
    wanted = {"intra": options.num_threads, "inter": options.inter_op_threads}
    try:
        threading.set_intra_op_parallelism_threads(wanted["intra"])
        threading.set_inter_op_parallelism_threads(wanted["inter"])
    except RuntimeError:
        current = {"intra": threading.get_intra_op_parallelism_threads() or machine_cores(),
                   "inter": threading.get_inter_op_parallelism_threads()}
        if current["intra"] != wanted["intra"] or current["inter"] not in (0, wanted["inter"]):
            raise RuntimeError(
                f"TensorFlow already runs with intra/inter-op threads {current['intra']}/{current['inter']}; "
                f"--num_threads={wanted['intra']} --inter_op_threads={wanted['inter']} must be set before "
                "TensorFlow's first op (call runtime.configure_tensorflow first).") from None
