"""medseg: reproducible fine-tuning of Segment Anything (SAM) for medical image segmentation."""

__version__ = "0.1.0"
