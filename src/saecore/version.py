"""The installed saecore version (read once from package metadata)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("saecore")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

SAELENS_VERSION = "6.54.12"
"""The SAELens release whose API and file format saecore follows: the value SAELens's own
version fields (``sae_lens_version``, ``sae_lens_training_version``) take by default."""
