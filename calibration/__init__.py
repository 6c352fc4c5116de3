"""Bringing a robot or simulator onto a trained model: I/O maps, latency budget, return target."""
