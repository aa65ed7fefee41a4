"""SAELens's ``sae_lens.analysis`` package: the models that run SAEs spliced into a language model."""
