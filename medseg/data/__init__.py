"""Raw datasets -> 2D slices, masks and patient-level splits."""
