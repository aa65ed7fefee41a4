"""SAELens's ``sae_lens.loading.pretrained_sae_loaders`` module path: the loader protocols and functions.

They are defined in :mod:`saecore.io.pretrained_loaders`, beside the converters they read through.
"""

from saecore.io.pretrained_loaders import (
    PretrainedSaeDiskLoader,
    PretrainedSaeHuggingfaceLoader,
    connor_rob_hook_z_huggingface_loader,
    deepseek_r1_sae_huggingface_loader,
    dictionary_learning_sae_huggingface_loader_1,
    gemma_2_sae_huggingface_loader,
    gemma_3_sae_huggingface_loader,
    get_goodfire_huggingface_loader,
    llama_scope_r1_distill_sae_huggingface_loader,
    llama_scope_sae_huggingface_loader,
    qwen_scope_sae_huggingface_loader,
    sae_lens_disk_loader,
    sae_lens_huggingface_loader,
    sparsify_disk_loader,
    sparsify_huggingface_loader,
    temporal_sae_huggingface_loader,
)

__all__ = [
    "PretrainedSaeDiskLoader",
    "PretrainedSaeHuggingfaceLoader",
    "connor_rob_hook_z_huggingface_loader",
    "deepseek_r1_sae_huggingface_loader",
    "dictionary_learning_sae_huggingface_loader_1",
    "gemma_2_sae_huggingface_loader",
    "gemma_3_sae_huggingface_loader",
    "get_goodfire_huggingface_loader",
    "llama_scope_r1_distill_sae_huggingface_loader",
    "llama_scope_sae_huggingface_loader",
    "qwen_scope_sae_huggingface_loader",
    "sae_lens_disk_loader",
    "sae_lens_huggingface_loader",
    "sparsify_disk_loader",
    "sparsify_huggingface_loader",
    "temporal_sae_huggingface_loader",
]
