"""SAELens's ``sae_lens.loading`` module paths, for code that imports from them.

``saecore.loading.pretrained_saes_directory`` holds what ``sae_lens.loading.pretrained_saes_directory``
does, and ``saecore.loading.pretrained_sae_loaders`` what ``sae_lens.loading.pretrained_sae_loaders``
does; the names SAELens exports at its top level are also importable from ``saecore`` itself.
"""
