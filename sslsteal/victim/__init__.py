"""The victim: SimCLR training with an optional rotation watermark, its checkpoints, and (later) its service."""
