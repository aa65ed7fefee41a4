"""Pydantic config models shared by the core and every plugin."""
