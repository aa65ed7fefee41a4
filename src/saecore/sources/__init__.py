"""Activation sources: where training batches come from (registered like any plugin)."""
