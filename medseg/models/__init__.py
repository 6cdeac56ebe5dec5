"""SAM backbones, fine-tuning strategies and checkpoints."""
