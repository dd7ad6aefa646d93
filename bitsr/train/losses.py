"""Training losses."""
from __future__ import annotations

import torch
import torch.nn as nn


class CharbonnierLoss(nn.Module):
    """mean(sqrt((x - y)^2 + eps^2)): L1-like, differentiable at 0 (LapSRN, BasicVSR)."""

    def __init__(self, eps: float = 1e-3):
        super().__init__()
        self.eps2 = eps * eps

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        d = pred.float() - target.float()
        return torch.sqrt(d * d + self.eps2).mean()
