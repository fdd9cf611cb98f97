"""Evaluation and benchmarks over SearchService: eval sets, metrics, reports, the benchmark."""
