"""bgshift_tf.data.datasets."""
