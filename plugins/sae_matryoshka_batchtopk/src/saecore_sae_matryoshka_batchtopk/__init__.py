"""Matryoshka BatchTopK: BatchTopK whose nested latent prefixes must each reconstruct the input on their own."""
