"""How a stolen copy is scored: linear probes and fidelity, baselines, watermark and legitimate-user accuracy, ownership tests."""
