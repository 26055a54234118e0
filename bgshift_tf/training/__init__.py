"""bgshift_tf.training."""
