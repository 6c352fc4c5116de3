"""Model export: ONNX graphs whose masks are inputs, so one graph serves every mode."""
