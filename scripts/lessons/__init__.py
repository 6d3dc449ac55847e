"""The lessons: the tutorial, the worked example, the gradient check walk-through and the
figures of docs/math.md. Run each as a file, e.g. ``python scripts/lessons/tutorial.py``."""
