"""Benchmark suites: one module per post-processing stage family (see `node.bench`)."""
