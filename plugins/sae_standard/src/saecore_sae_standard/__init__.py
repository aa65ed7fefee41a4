"""The standard SAE: ReLU encoder, linear decoder, L1 penalty weighted by decoder norms."""
