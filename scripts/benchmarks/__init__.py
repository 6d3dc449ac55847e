"""The benchmarks: training and decoding speed, scaling, the Keras reference run and
side-by-side model comparisons. Run each as a file, e.g. ``python scripts/benchmarks/bench.py``."""
