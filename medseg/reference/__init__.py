"""Reference numbers transcribed from the study, for side-by-side comparison."""
