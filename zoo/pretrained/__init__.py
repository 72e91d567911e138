"""Tiny checkpoints shipped as package data (each a release folder: weights, config.yaml, model card)."""
