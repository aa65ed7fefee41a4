"""Evaluations of trained SAEs (reconstruction, sparsity, recovery of known features)."""
