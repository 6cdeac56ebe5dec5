"""Project-defined nnU-Net trainer classes.

nnU-Net finds them by class name: :mod:`medseg.baselines.nnunet` puts this folder on the
``nnUNet_extTrainer`` path of the nnU-Net processes it starts. Nothing here is imported by medseg
itself (importing the modules needs nnunetv2).
"""
