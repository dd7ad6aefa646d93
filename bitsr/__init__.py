"""bitsr: super-resolution of HEVC-compressed video guided by the bitstream.

The C++ core parses HEVC down to the CTU syntax and exports, per picture, the motion
vectors, partitions, prediction modes, QP and residual flags the encoder chose. Those
priors replace optical flow and patch classifiers in the SR network.
"""
from ._core import BitstreamError, LimitError, UnsupportedStreamError
from .io.reader import Frame, PriorsFrame, Reader, extract, iter_frames, open  # noqa: A004
from .priors import PicturePriors, Window


def __getattr__(name):
    # Upscaler pulls in torch: import it only when asked for (PEP 562).
    if name == "Upscaler":
        from .upscaler import Upscaler

        return Upscaler
    raise AttributeError(f"module 'bitsr' has no attribute {name!r}")


def upscale(src, dst=None, scale=4, model="default", device="auto", **options):
    """Upscales a compressed video file and writes the result; returns the output path.
    See :func:`bitsr.pipeline.upscale` for the options (imported on first use: it needs torch)."""
    from .pipeline import upscale as run

    return run(src, dst, scale, model, device, **options)


__version__ = "0.1.0"

__all__ = [
    "BitstreamError",
    "LimitError",
    "UnsupportedStreamError",
    "PicturePriors",
    "Window",
    "extract",
    "iter_frames",
    "open",
    "Frame",
    "PriorsFrame",
    "Reader",
    "Upscaler",
    "upscale",
]
