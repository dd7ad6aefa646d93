"""Training: config, losses, metrics, the trainer loop."""
from .config import load_config
from .losses import CharbonnierLoss
from .metrics import psnr_y, ssim_y
from .trainer import Trainer, load_checkpoint

__all__ = ["load_config", "CharbonnierLoss", "psnr_y", "ssim_y", "Trainer", "load_checkpoint"]
