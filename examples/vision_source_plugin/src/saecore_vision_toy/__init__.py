"""Example saecore source plugin: activations of a small CNN on synthetic images, via forward hooks."""
