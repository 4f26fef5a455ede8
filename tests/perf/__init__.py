"""pytest-benchmark suite and its CI regression gate (see gate.py and .ci/perf)."""
