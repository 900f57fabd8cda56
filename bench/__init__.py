"""Benchmarks: speed is measured here, never in tests (see docs/performance.md)."""
