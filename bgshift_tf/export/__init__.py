"""bgshift_tf.export."""
