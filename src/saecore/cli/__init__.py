"""The ``saecore`` command line."""
