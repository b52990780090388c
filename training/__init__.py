"""Antiphon's offline half: corpus, model, training, ONNX export and evaluation (PyTorch)."""
