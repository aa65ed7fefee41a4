"""SAELens's ``sae_lens.loading`` module paths, for code that imports from them.

``saecore.loading.pretrained_saes_directory`` holds what ``sae_lens.loading.pretrained_saes_directory``
does; the names are also importable from ``saecore`` itself.
"""
