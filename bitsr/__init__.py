"""bitsr: super-resolution of HEVC-compressed video guided by the bitstream.

The C++ core parses HEVC down to the CTU syntax and exports, per picture, the motion
vectors, partitions, prediction modes, QP and residual flags the encoder chose. Those
priors replace optical flow and patch classifiers in the SR network.
"""
import sys
import types

from ._core import BitstreamError, LimitError, UnsupportedStreamError
from .priors import PicturePriors, extract
from .io.reader import Frame, Reader, open  # noqa: A004


def __getattr__(name):
    # Upscaler pulls in torch: import it only when asked for.
    if name == "Upscaler":
        from .upscale import Upscaler

        return Upscaler
    raise AttributeError(f"module 'bitsr' has no attribute {name!r}")


def upscale(src, dst=None, scale=4, model="default", device="auto", **options):
    """Upscales a compressed video file and writes the result; returns the output path.
    See :func:`bitsr.pipeline.upscale` for the options (imported on first use: it needs torch)."""
    from .pipeline import upscale as run

    return run(src, dst, scale, model, device, **options)


class _Package(types.ModuleType):
    """``bitsr.upscale`` is the function above; importing the submodule of the same name (which
    holds ``Upscaler``) would otherwise rebind the package attribute to that module."""

    def __setattr__(self, name, value):
        if name == "upscale" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


__version__ = "0.1.0"

__all__ = [
    "BitstreamError",
    "LimitError",
    "UnsupportedStreamError",
    "PicturePriors",
    "extract",
    "open",
    "Frame",
    "Reader",
    "Upscaler",
    "upscale",
]
