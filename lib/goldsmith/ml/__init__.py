"""Training, evaluation, the model registry and batch scoring."""
