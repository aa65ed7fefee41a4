"""SAELens's ``sae_lens.loading.pretrained_sae_loaders`` module path: the loader protocols and functions.

They are defined in :mod:`saecore.io.pretrained_loaders`, beside the converters they read through, and
:mod:`saecore.io.saelens_config_readers`.
"""

from saecore.io.pretrained_loaders import (
    PretrainedSaeDiskLoader,
    PretrainedSaeHuggingfaceLoader,
    connor_rob_hook_z_huggingface_loader,
    deepseek_r1_sae_huggingface_loader,
    dictionary_learning_sae_huggingface_loader_1,
    gemma_2_sae_huggingface_loader,
    gemma_2_transcoder_huggingface_loader,
    gemma_3_sae_huggingface_loader,
    get_goodfire_huggingface_loader,
    llama_scope_r1_distill_sae_huggingface_loader,
    llama_scope_sae_huggingface_loader,
    mntss_clt_layer_huggingface_loader,
    mwhanna_transcoder_huggingface_loader,
    qwen_scope_sae_huggingface_loader,
    sae_lens_disk_loader,
    sae_lens_huggingface_loader,
    sparsify_disk_loader,
    sparsify_huggingface_loader,
    temporal_sae_huggingface_loader,
)
from saecore.io.saelens_config_readers import (
    get_sae_lens_config_from_disk,
    get_sae_lens_config_from_hf,
    handle_config_defaulting,
    handle_pre_6_0_config,
    load_safetensors_weights,
    read_sae_components_from_disk,
)
from saecore.loading.pretrained_saes_directory import get_pretrained_saes_directory

__all__ = [
    "PretrainedSaeDiskLoader",
    "PretrainedSaeHuggingfaceLoader",
    "connor_rob_hook_z_huggingface_loader",
    "deepseek_r1_sae_huggingface_loader",
    "dictionary_learning_sae_huggingface_loader_1",
    "gemma_2_sae_huggingface_loader",
    "gemma_2_transcoder_huggingface_loader",
    "gemma_3_sae_huggingface_loader",
    "get_conversion_loader_name",
    "get_goodfire_huggingface_loader",
    "get_sae_lens_config_from_disk",
    "get_sae_lens_config_from_hf",
    "handle_config_defaulting",
    "handle_pre_6_0_config",
    "llama_scope_r1_distill_sae_huggingface_loader",
    "llama_scope_sae_huggingface_loader",
    "load_safetensors_weights",
    "mntss_clt_layer_huggingface_loader",
    "mwhanna_transcoder_huggingface_loader",
    "qwen_scope_sae_huggingface_loader",
    "read_sae_components_from_disk",
    "sae_lens_disk_loader",
    "sae_lens_huggingface_loader",
    "sparsify_disk_loader",
    "sparsify_huggingface_loader",
    "temporal_sae_huggingface_loader",
]


def get_conversion_loader_name(release: str) -> str:
    """SAELens's name of the loader that reads ``release`` (its ``conversion_func``); ``"sae_lens"`` by default.

    A release the directory does not list is read as the ``sae_lens`` format, as in SAELens.
    """
    lookup = get_pretrained_saes_directory().get(release)
    if lookup is None or lookup.conversion_func is None:
        return "sae_lens"
    return lookup.conversion_func
