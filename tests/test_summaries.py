"""Tests for bgshift_tf.training.summaries: TensorBoard scalars read back (image grids: test_loop, test_train_gan)."""

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from bgshift_tf.training import summaries


def test_read_scalars_reads_tensor_and_simple_value_summaries(tmp_path):
    # tf.summary.scalar needs the tensorboard package (not installed): write the same tensor records
    # with the core op, plus TF1-style simple_value records.
    logdir = tmp_path / "logs"
    with tf.summary.create_file_writer(str(logdir)).as_default():
        for step in range(5):
            tf.summary.write("losses/g_total", tf.constant(10.0 - step), step=step)
            tf.summary.write("losses/d_adv", tf.constant(step * 0.5), step=step)
        tf.summary.write("losses/g_total", tf.constant(-1.0), step=4)  # a resumed run rewrites step 4
        tf.summary.write("images/sample", tf.constant(["a", "b"]), step=0)  # not a scalar: ignored
    with tf.summary.create_file_writer(str(logdir / "eval")).as_default():
        proto = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag="rank1", simple_value=0.25)])
        tf.summary.experimental.write_raw_pb(proto.SerializeToString(), step=3)
    scalars = summaries.read_scalars(logdir)
    assert set(scalars) == {"losses/g_total", "losses/d_adv", "eval/rank1"}
    steps, values = scalars["losses/g_total"]
    np.testing.assert_array_equal(steps, [0, 1, 2, 3, 4])
    np.testing.assert_allclose(values, [10, 9, 8, 7, -1])
    np.testing.assert_allclose(scalars["losses/d_adv"][1], [0, 0.5, 1, 1.5, 2])
    np.testing.assert_array_equal(scalars["eval/rank1"][0], [3])
    np.testing.assert_allclose(scalars["eval/rank1"][1], [0.25])
    with pytest.raises(FileNotFoundError, match="nope"):
        summaries.read_scalars(tmp_path / "nope")
