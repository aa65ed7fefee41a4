"""Tests of the saecore core: plugin discovery, the registry, loading, and the SAE base class."""
