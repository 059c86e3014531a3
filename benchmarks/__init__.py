"""Benchmark commands (run from the repository root, not installed): `python -m benchmarks.model_bench`,
`python -m benchmarks.synth_bench`, `python -m benchmarks.gpu_check`. Each prints or writes its figures with the
machine it ran on; none is a test."""
