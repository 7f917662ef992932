"""Benchmarks of minivae's training step against its matrix-product floor and PyTorch (``python -m benchmarks.run``)."""
