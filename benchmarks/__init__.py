"""Performance benchmarks for pinrun (pytest-benchmark); see benchmarks/README.md."""
