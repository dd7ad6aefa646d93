"""Writers for prepared pairs: libx265 LR bitstreams (the degradation under study) and
lossless FFV1 HR frames, both in Matroska through PyAV."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import numpy as np

GOPS = ("ldp", "ra")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")


@dataclass(frozen=True)
class EncodeSpec:
    """libx265 settings of one LR encoding.

    ``gop='ldp'``: low-delay P (no B pictures, each picture predicts from earlier ones);
    ``gop='ra'``: random access with a hierarchical B pyramid of ``bframes`` pictures.
    Exactly one of ``crf`` / ``qp`` is used (``qp`` wins when both are set). Scene-cut
    detection and open GOPs are off so the GOP structure is what was asked for, and frame
    threads are 1 so the bitstream does not depend on the machine's core count.
    """

    crf: float | None = 25
    qp: int | None = None
    gop: str = "ldp"
    keyint: int = 32
    preset: str = "medium"
    bframes: int = 3

    def __post_init__(self):
        if self.gop not in GOPS:
            raise ValueError(f"gop must be one of {GOPS}, got {self.gop!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown x265 preset {self.preset!r}")
        if self.qp is None and self.crf is None:
            raise ValueError("give crf or qp")
        if self.qp is not None and not 0 <= self.qp <= 51:
            raise ValueError(f"qp must be in 0..51, got {self.qp}")
        if self.qp is None and not 0 <= float(self.crf) <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.keyint < 1:
            raise ValueError("keyint must be >= 1")
        if self.gop == "ra" and self.bframes < 2:
            raise ValueError("random access needs bframes >= 2 for a B pyramid")

    @property
    def tag(self) -> str:
        """Short unique name, used for file names and manifest keys."""
        rate = f"qp{self.qp}" if self.qp is not None else f"crf{self.crf:g}"
        gop = "ldp" if self.gop == "ldp" else f"ra{self.bframes}"
        return f"{rate}_{gop}_k{self.keyint}_{self.preset}"

    def x265_params(self) -> str:
        p = ["log-level=error", "info=0", "frame-threads=1", f"keyint={self.keyint}",
             f"min-keyint={self.keyint}", "scenecut=0", "open-gop=0"]
        p.append(f"qp={self.qp}" if self.qp is not None else f"crf={self.crf:g}")
        if self.gop == "ldp":
            p.append("bframes=0")
        else:
            p += [f"bframes={self.bframes}", "b-pyramid=1", "b-adapt=0"]
        return ":".join(p)

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.qp is not None:
            d["crf"] = None
        if self.gop == "ldp":
            d["bframes"] = 0
        return d


class _Writer:
    def __init__(self, path: str, codec: str, pix_fmt: str, width: int, height: int, fps: Fraction, options=None):
        self.path = path
        self._c = av.open(path, "w", format="matroska")
        self._s = self._c.add_stream(codec, rate=fps)
        self._s.width, self._s.height, self._s.pix_fmt = width, height, pix_fmt
        # Frames are stamped in this fixed time base: the stream's own time base changes to the
        # muxer's (1/1000 for Matroska) once the first packet is written.
        self._tb = Fraction(1, 1) / fps
        self._s.time_base = self._tb
        if options:
            self._s.options = options
        self._pix_fmt = pix_fmt
        self._n = 0

    def write(self, rgb: np.ndarray) -> None:
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format=self._pix_fmt)
        vf.pts = self._n
        vf.time_base = self._tb
        for pkt in self._s.encode(vf):
            self._c.mux(pkt)
        self._n += 1

    def close(self) -> None:
        if self._c is None:
            return
        for pkt in self._s.encode(None):
            self._c.mux(pkt)
        self._c.close()
        self._c = None

    def abort(self) -> None:
        try:
            if self._c is not None:
                self._c.close()
        finally:
            self._c = None
            if os.path.exists(self.path):
                os.remove(self.path)


def hevc_writer(path: str, spec: EncodeSpec, width: int, height: int, fps: Fraction) -> _Writer:
    """libx265 writer: RGB frames in, 8-bit 4:2:0 HEVC (BT.601 conversion by swscale) out."""
    if width % 2 or height % 2:
        raise ValueError(f"4:2:0 needs even sizes, got {width}x{height}")
    return _Writer(path, "libx265", "yuv420p", width, height, fps,
                   {"x265-params": spec.x265_params(), "preset": spec.preset})


def lossless_writer(path: str, width: int, height: int, fps: Fraction) -> _Writer:
    """FFV1 (bgr0, lossless RGB) writer, the format of the shared training clips."""
    return _Writer(path, "ffv1", "bgr0", width, height, fps, {"level": "3"})
