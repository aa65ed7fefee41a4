"""BatchTopK: keep the top k·B activations of a whole batch; save as a JumpReLU SAE with a learned threshold."""
