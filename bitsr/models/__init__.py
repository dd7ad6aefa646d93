"""Network architectures (pure ``nn.Module``s), built from configs through the registry."""
from .bitvsr_arch import BitVSR
from .registry import ARCH_REGISTRY, build_model, register_arch

__all__ = ["ARCH_REGISTRY", "build_model", "register_arch", "BitVSR"]
