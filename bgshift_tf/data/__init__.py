"""bgshift_tf.data."""
