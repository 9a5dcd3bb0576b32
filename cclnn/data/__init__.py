"""Image input/output and datasets."""
