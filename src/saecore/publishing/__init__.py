"""Publishing SAEs to the Hugging Face Hub: ``push_to_hub``, SAELens's ``upload_saes_to_huggingface`` and the
``saecore push`` command."""

from saecore.publishing.push import PushResult, push_to_hub
from saecore.publishing.saelens_upload import upload_saes_to_huggingface

__all__ = ["PushResult", "push_to_hub", "upload_saes_to_huggingface"]
