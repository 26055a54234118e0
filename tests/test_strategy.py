"""Tests for bgshift_tf.training.strategy: strategy choice and the CPU split."""

import pytest
import tensorflow as tf

from bgshift_tf.training import strategy


def test_make_strategy_checks_its_arguments(monkeypatch):
    with pytest.raises(ValueError, match="strategy='bogus'"):
        strategy.make_strategy("bogus")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy.make_strategy("multi_worker")
    # conftest split the CPU in 2; once devices are initialised, asking for 3 is too late, 2 matches.
    assert len(tf.config.list_logical_devices("CPU")) == 2
    with pytest.raises(RuntimeError, match="already initialised its devices with 2 logical CPU"):
        strategy.make_strategy("mirrored", cpu_replicas=3)
    assert strategy.make_strategy("mirrored", cpu_replicas=2).num_replicas_in_sync == 2
    assert strategy.make_strategy("default").num_replicas_in_sync == 1


def test_thread_pools_are_set_in_a_fresh_process_and_a_late_change_is_named():
    import subprocess
    import sys

    code = ("import tensorflow as tf\nfrom bgshift_tf.training import strategy\n"
            "strategy.make_strategy('default', 0, intra_op_threads=1, inter_op_threads=2)\n"
            "tf.constant(1.0) + 1.0\n"
            "print(tf.config.threading.get_intra_op_parallelism_threads(), "
            "tf.config.threading.get_inter_op_parallelism_threads())\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split()[-2:] == ["1", "2"]
    # In this process TensorFlow has long started: 0 (its default) and the current value pass, others fail.
    tf.constant(1.0) + 1.0
    current = tf.config.threading.get_inter_op_parallelism_threads()
    strategy.configure_threads(0, current)
    with pytest.raises(RuntimeError, match="--intra_op_threads=7: TensorFlow already started"):
        strategy.configure_threads(7, 0)
    with pytest.raises(ValueError, match="must be >= 0"):
        strategy.configure_threads(-1, 0)
