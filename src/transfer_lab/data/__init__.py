"""Photos: sources, layouts, the one decoder, the manifest, class groups, tf.data input."""
