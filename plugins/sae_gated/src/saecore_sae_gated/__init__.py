"""The gated SAE: a gate decides which latents fire, a magnitude path decides how much."""
