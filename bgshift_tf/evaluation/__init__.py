"""bgshift_tf.evaluation."""
