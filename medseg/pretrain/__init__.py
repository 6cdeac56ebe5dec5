"""Pretraining of SAM's image encoder before fine-tuning (the study's SSLSAM)."""
