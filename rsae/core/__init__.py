"""The SAE core: configuration, the model and its activation families, the rational kernel, the trainer, data, files,
metrics."""
