"""bgshift_tf.report."""
