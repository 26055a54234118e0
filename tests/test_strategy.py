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
