"""Publishing SAEs to the Hugging Face Hub: ``push_to_hub`` and the ``saecore push`` command."""

from saecore.publishing.push import PushResult, push_to_hub

__all__ = ["PushResult", "push_to_hub"]
