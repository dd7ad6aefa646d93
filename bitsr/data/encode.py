"""Writers for prepared pairs: LR bitstreams (the degradation under study: libx265 in Matroska
or libx264 in MP4) and lossless FFV1 HR frames in Matroska, all through PyAV.

An :class:`EncodeSpec` names one LR encoding. Its ``gop`` is either a structure fixed by bitsr
(``'ldp'`` low-delay P, ``'ra'`` a fixed B pyramid; scene-cut detection and open GOPs off) or
``'default'``: the encoder's own GOP decisions, as most real video is encoded (x265: B-pyramid
of up to 4 B pictures placed by b-adapt 2, keyint 250, scene-cut detection, open GOP; x264:
High profile, up to 3 B pictures placed by b-adapt 1, keyint 250, scene-cut detection). Only
what makes the bitstream reproducible is forced: one frame thread for x265 (its thread pool
does not change the output), one thread for x264 (whose output depends on its thread count),
and quiet logs.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from fractions import Fraction

import av
import numpy as np

CODECS = ("x265", "x264")
GOPS = ("ldp", "ra", "default")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
# codec -> (FFmpeg encoder, container format, LR file extension)
ENCODERS = {"x265": ("libx265", "matroska", ".mkv"), "x264": ("libx264", "mp4", ".mp4")}


@dataclass(frozen=True)
class EncodeSpec:
    """Settings of one LR encoding.

    ``codec``: ``'x265'`` (HEVC in .mkv, read by bitsr's parser) or ``'x264'`` (H.264 High
    profile in .mp4, read through FFmpeg's exported side data).
    ``gop='ldp'``: low-delay P (no B pictures, each picture predicts from earlier ones), an
    intra picture every ``keyint`` frames;
    ``gop='ra'``: random access with a hierarchical B pyramid of ``bframes`` pictures, an intra
    picture every ``keyint`` frames;
    ``gop='default'``: the encoder's own defaults (adaptive B-frames, long keyint with scene-cut
    detection); ``keyint`` and ``bframes`` do not apply and are stored as None.
    Exactly one of ``crf`` / ``qp`` is used (``qp`` wins when both are set). For 'ldp' and
    'ra', scene-cut detection and open GOPs are off so the GOP structure is what was asked for.
    Frame threads are 1 so the bitstream does not depend on the machine's core count.
    """

    crf: float | None = 25
    qp: int | None = None
    gop: str = "ldp"
    keyint: int | None = 32
    preset: str = "medium"
    bframes: int | None = 3
    codec: str = "x265"

    def __post_init__(self):
        if self.codec not in CODECS:
            raise ValueError(f"codec must be one of {CODECS}, got {self.codec!r}")
        if self.gop not in GOPS:
            raise ValueError(f"gop must be one of {GOPS}, got {self.gop!r}")
        if self.preset not in PRESETS:
            raise ValueError(f"unknown {self.codec} preset {self.preset!r}")
        if self.qp is None and self.crf is None:
            raise ValueError("give crf or qp")
        if self.qp is not None and not 0 <= self.qp <= 51:
            raise ValueError(f"qp must be in 0..51, got {self.qp}")
        if self.qp is None and not 0 <= float(self.crf) <= 51:
            raise ValueError(f"crf must be in 0..51, got {self.crf}")
        if self.gop == "default":  # the encoder decides: nothing of ours to record
            object.__setattr__(self, "keyint", None)
            object.__setattr__(self, "bframes", None)
            return
        if self.keyint is None or self.keyint < 1:
            raise ValueError("keyint must be >= 1")
        if self.gop == "ra" and (self.bframes is None or self.bframes < 2):
            raise ValueError("random access needs bframes >= 2 for a B pyramid")
        if self.gop == "ra" and self.codec == "x264" and self.bframes > 16:
            raise ValueError("x264 allows at most 16 B-frames")

    @property
    def tag(self) -> str:
        """Short unique name, used for file names and manifest keys: ``crf25_ldp_k32_medium``,
        ``crf25_ra3_k32_medium`` (x265 fixed GOPs, as before), ``crf25_x265_medium`` (x265
        defaults), ``crf25_x264_medium`` (x264 defaults), ``crf25_x264ldp_k32_medium``..."""
        rate = f"qp{self.qp}" if self.qp is not None else f"crf{self.crf:g}"
        if self.gop == "default":
            return f"{rate}_{self.codec}_{self.preset}"
        gop = "ldp" if self.gop == "ldp" else f"ra{self.bframes}"
        prefix = "" if self.codec == "x265" else self.codec
        return f"{rate}_{prefix}{gop}_k{self.keyint}_{self.preset}"

    @property
    def family(self) -> str:
        """Codec and GOP kind without rate or preset, e.g. 'x265-default', 'x265-ldp'."""
        return f"{self.codec}-{self.gop}"

    @property
    def encoder(self) -> str:
        """The FFmpeg encoder: 'libx265' or 'libx264'."""
        return ENCODERS[self.codec][0]

    @property
    def container(self) -> str:
        """FFmpeg muxer of the LR file: 'matroska' (x265) or 'mp4' (x264)."""
        return ENCODERS[self.codec][1]

    @property
    def ext(self) -> str:
        """Extension of the LR file: '.mkv' (x265) or '.mp4' (x264)."""
        return ENCODERS[self.codec][2]

    @property
    def filename(self) -> str:
        return self.tag + self.ext

    def params(self) -> str:
        """The encoder's parameter string (x265-params or x264-params)."""
        rate = f"qp={self.qp}" if self.qp is not None else f"crf={self.crf:g}"
        if self.codec == "x265":
            p = ["log-level=error", "info=0", "frame-threads=1"]
            if self.gop != "default":
                p += [f"keyint={self.keyint}", f"min-keyint={self.keyint}", "scenecut=0", "open-gop=0"]
            p.append(rate)
            if self.gop == "ldp":
                p.append("bframes=0")
            elif self.gop == "ra":
                p += [f"bframes={self.bframes}", "b-pyramid=1", "b-adapt=0"]
            return ":".join(p)
        p = ["threads=1"]
        if self.gop != "default":
            p += [f"keyint={self.keyint}", f"min-keyint={self.keyint}", "scenecut=0"]
        p.append(rate)
        if self.gop == "ldp":
            p.append("bframes=0")
        elif self.gop == "ra":
            p += [f"bframes={self.bframes}", "b-pyramid=normal", "b-adapt=0"]
        return ":".join(p)

    def x265_params(self) -> str:
        if self.codec != "x265":
            raise ValueError(f"{self.tag}: not an x265 encoding (see params())")
        return self.params()

    def options(self) -> dict:
        """PyAV/FFmpeg encoder options."""
        return {f"{self.codec}-params": self.params(), "preset": self.preset}

    def to_dict(self) -> dict:
        d = asdict(self)
        if self.qp is not None:
            d["crf"] = None
        if self.gop == "ldp":
            d["bframes"] = 0
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "EncodeSpec":
        """Inverse of :meth:`to_dict` (manifests written before ``codec`` existed are x265)."""
        d = dict(d)
        if d.get("gop") == "ldp":
            d["bframes"] = 3
        return cls(**{k: d[k] for k in ("crf", "qp", "gop", "keyint", "preset", "bframes", "codec") if k in d})


# Presets the training mix alternates between, per encoding family. x265 at presets faster than
# medium turns b-adapt off (a fixed mini-GOP), so its default GOP alternates medium/slow, both
# with x265's adaptive B placement (b-adapt 2); x264 keeps b-adapt 1 at fast.
MIX_PRESETS = {"x265-default": ("medium", "slow"), "x265-ldp": ("medium", "fast"), "x264-default": ("medium", "fast")}
# (codec, gop, CRF band) of the 7 encodings of a clip in the training mix
MIX_BANDS = (("x265", "default", (18, 24)), ("x265", "default", (25, 31)), ("x265", "default", (32, 38)),
             ("x265", "ldp", (18, 27)), ("x265", "ldp", (28, 38)),
             ("x264", "default", (18, 27)), ("x264", "default", (28, 38)))


def training_mix(clip: str) -> list[EncodeSpec]:
    """The encodings of one training clip in the default mix of ``tools/prepare_train.py``:
    7 per clip, chosen deterministically from the clip's name (SHA-256, not Python's salted
    ``hash``), so that a clip's mix never changes and the CRFs cover 18-38 evenly over many
    clips (integer CRFs):

    * x265 default GOP at 3 CRFs, one from each of 18-24, 25-31 and 32-38, presets
      alternating medium / slow;
    * x265 low-delay P (keyint 32) at 2 CRFs, one from each of 18-27 and 28-38, presets
      alternating medium / fast;
    * x264 default GOP (High profile, B-frames, MP4) at 2 CRFs, one from each of 18-27 and
      28-38, presets alternating medium / fast.

    Within each family the first preset is the hash's pick and the next alternates, so each
    clip has both presets of every family and the whole set about as many of each.
    """
    import hashlib

    h = hashlib.sha256(clip.encode()).digest()
    out, seen = [], {}
    for j, (codec, gop, (lo, hi)) in enumerate(MIX_BANDS):
        fam = f"{codec}-{gop}"
        k = seen[fam] = seen.get(fam, -1) + 1
        presets = MIX_PRESETS[fam]
        preset = presets[(h[0] + k) % len(presets)]
        crf = lo + h[1 + j] % (hi - lo + 1)
        out.append(EncodeSpec(crf=crf, gop=gop, codec=codec, preset=preset))
    return out


class _Writer:
    def __init__(self, path: str, codec: str, pix_fmt: str, width: int, height: int, fps: Fraction, options=None,
                 container: str = "matroska"):
        self.path = path
        self._c = av.open(path, "w", format=container)
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


def lr_writer(path: str, spec: EncodeSpec, width: int, height: int, fps: Fraction) -> _Writer:
    """Writer of one LR encoding: RGB frames in, 8-bit 4:2:0 (BT.601 conversion by swscale)
    HEVC in Matroska or H.264 in MP4 out, as ``spec`` says."""
    if width % 2 or height % 2:
        raise ValueError(f"4:2:0 needs even sizes, got {width}x{height}")
    return _Writer(path, spec.encoder, "yuv420p", width, height, fps, spec.options(), container=spec.container)


def hevc_writer(path: str, spec: EncodeSpec, width: int, height: int, fps: Fraction) -> _Writer:
    """libx265 writer (Matroska): RGB frames in, 8-bit 4:2:0 HEVC out."""
    if spec.codec != "x265":
        raise ValueError(f"{spec.tag}: not an x265 encoding (use lr_writer)")
    return lr_writer(path, spec, width, height, fps)


def lossless_writer(path: str, width: int, height: int, fps: Fraction) -> _Writer:
    """FFV1 (bgr0, lossless RGB) writer, the format of the shared training clips."""
    return _Writer(path, "ffv1", "bgr0", width, height, fps, {"level": "3"})
