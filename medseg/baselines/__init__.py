"""Baselines trained on the same ingested slices as the SAM models."""
