"""Test-wide set-up: quiet TensorFlow, CPU only, and two logical CPU devices.

The two logical devices let mirrored-strategy tests run two replicas in-process on a CPU-only machine
(SPEC §5). They must be configured before TensorFlow initialises its devices, hence at import time here.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# oneDNN's AMX-BF16 kernels give NaN intermittently on the AMX Xeon VMs (BUILD_NOTES "bf16 is not usable on
# this CPU"): the da2s bf16 forward of test_precision was NaN in 16 of 90 calls there, 0 of 90 with oneDNN
# capped at AVX512_CORE_FP16, the level below AMX (AVX512_CORE_BF16 would also drop the fp16 convs). The cap
# makes the bf16 tests test our code, not that fault; it is a no-op on CPUs without AMX (Zen 3 / Zen 4).
# precision=auto in the product still probes the real kernels (core/precision.py).
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_FP16")

import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()]
)


@pytest.fixture(autouse=True)
def _reset_keras_state():
    """Each test starts with fresh Keras layer-name counters and a fixed seed."""
    import keras

    # free_memory=False skips a full gc.collect() (~0.6 s per test on a loaded machine).
    keras.backend.clear_session(free_memory=False)
    keras.utils.set_random_seed(1234)
    yield


@pytest.fixture(autouse=True)
def _isolate_absl_flags():
    """Entry points define absl flags at import; tests import several of them into one process.

    After each test, flags defined during it are removed and the modules that defined them are unloaded,
    so the next test can import another entry point with flags of the same name (e.g. `--seed`).
    """
    import sys

    from absl import flags

    names_before = set(flags.FLAGS)
    modules_before = set(flags.FLAGS.flags_by_module_dict())
    yield
    for module in set(flags.FLAGS.flags_by_module_dict()) - modules_before:
        sys.modules.pop(module, None)
        parent, _, child = module.rpartition(".")
        if parent in sys.modules and hasattr(sys.modules[parent], child):
            delattr(sys.modules[parent], child)  # else `from package import module` reuses the old one
    for name in set(flags.FLAGS) - names_before:
        if name in flags.FLAGS:  # a short name goes with its long name
            delattr(flags.FLAGS, name)
    flags.FLAGS.unparse_flags()
