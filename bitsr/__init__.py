"""bitsr: super-resolution of HEVC-compressed video guided by the bitstream.

The C++ core parses HEVC down to the CTU syntax and exports, per picture, the motion
vectors, partitions, prediction modes, QP and residual flags the encoder chose. Those
priors replace optical flow and patch classifiers in the SR network.
"""
from ._core import BitstreamError, LimitError, UnsupportedStreamError
from .priors import PicturePriors, extract
from .io.reader import Frame, Reader, open  # noqa: A004


def __getattr__(name):
    # Upscaler pulls in torch: import it only when asked for.
    if name == "Upscaler":
        from .upscale import Upscaler

        return Upscaler
    raise AttributeError(f"module 'bitsr' has no attribute {name!r}")


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
]
