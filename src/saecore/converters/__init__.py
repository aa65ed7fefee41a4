"""Built-in converters for SAE formats, registered through the converter hook."""
