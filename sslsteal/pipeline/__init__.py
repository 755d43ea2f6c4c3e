"""One stealing run in-process: resolve the victim, steal, evaluate, test ownership; stolen-encoder files."""
