"""The JumpReLU SAE: a ReLU whose per-latent threshold is learned through straight-through estimators."""
