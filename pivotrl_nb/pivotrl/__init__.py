"""The PivotRL paper (arXiv 2603.21383): rewards, environments, pivots, trainers, OOD suite, theory."""
