"""What a user may write, as pydantic specs: importable without torch, Ray or MLflow, so validating a YAML is fast."""
