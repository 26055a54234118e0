"""Tests for bgshift_tf.training.interrupts: exit statuses and messages of interrupted entry points."""

import pytest

from bgshift_tf.training import interrupts


def test_exit_on_interrupt_names_the_command_and_exits_128_plus_the_signal(capsys):
    with pytest.raises(SystemExit) as sigterm:
        with interrupts.exit_on_interrupt("train_gan"):
            raise interrupts.SignalInterrupt(15)  # what train_loop raises after saving on SIGTERM
    assert sigterm.value.code == 143
    assert "train_gan: interrupted (signal 15)" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ctrl_c:
        with interrupts.exit_on_interrupt("pipeline"):
            raise KeyboardInterrupt()
    assert ctrl_c.value.code == 130
    assert "pipeline: interrupted (Ctrl-C)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not an interrupt"):  # other errors pass through untouched
        with interrupts.exit_on_interrupt("pipeline"):
            raise ValueError("not an interrupt")
