"""Small utilities every layer may use: the component registry, seeded random streams, devices, atomic files, statistics, store URLs."""
