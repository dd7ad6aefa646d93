"""Network architectures (pure ``nn.Module``s), built from configs through the registry."""
from .registry import ARCH_REGISTRY, build_model, register_arch
from .bitvsr_arch import BitVSR

__all__ = ["ARCH_REGISTRY", "build_model", "register_arch", "BitVSR"]
