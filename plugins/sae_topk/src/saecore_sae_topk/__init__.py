"""The TopK SAE: keep the k largest pre-activations per input, decode sparsely, train with AuxK."""
