"""Shared foundations: errors, library facts, config, layout, metrics, model loading, ONNX sessions."""
