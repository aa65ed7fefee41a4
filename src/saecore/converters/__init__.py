"""The core's built-ins for published SAEs: format converters and the release directory.

Both register through the same hooks as any plugin (see ``builtin_plugin``).
"""
