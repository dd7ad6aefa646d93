"""Paired data: MATLAB-bicubic LR, libx265 encodings, datasets, augmentation, model inputs."""
