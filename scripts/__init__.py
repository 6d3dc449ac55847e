"""Runnable scripts beside the library (not installed with it): lessons and benchmarks."""
