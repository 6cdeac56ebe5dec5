"""Data quality gates."""
