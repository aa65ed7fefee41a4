"""SAELens's ``sae_lens.saes`` package: one module per architecture, as in SAELens.

Each module serves the classes of the plugin package that provides the architecture;
the core's own contracts are in ``saecore.saes.sae``.
"""
