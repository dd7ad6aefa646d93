"""Writing the priors schema (.npz) with memory bounded by one picture.

Pictures arrive one at a time in decoding order; each per-4x4 array is appended to a
temporary file and the compressed archive is assembled at the end, so a long 1080p stream
never needs all its pictures in memory (np.savez_compressed would).
"""
from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np


class NpzStreamWriter:
    def __init__(self, path: str | os.PathLike, compress: bool = True):
        self.path = Path(path)
        self.compress = compress
        self._tmp = tempfile.TemporaryDirectory(prefix="bitsr-npz-",
                                                dir=self.path.parent if self.path.parent.exists() else None)
        self._files: dict[str, tuple] = {}  # name -> (file, dtype, frame_shape, count)
        self._scalars: dict[str, np.ndarray] = {}
        self._lists: dict[str, list] = {}

    def set(self, name: str, value) -> None:
        """A stream-level value (scalar or small array)."""
        self._scalars[name] = np.asarray(value)

    def append_value(self, name: str, value, dtype) -> None:
        """One value per picture (poc, nal_type, ...)."""
        self._lists.setdefault(name, [np.dtype(dtype), []])[1].append(value)

    def append_array(self, name: str, arr: np.ndarray) -> None:
        arr = np.ascontiguousarray(arr)
        entry = self._files.get(name)
        if entry is None:
            f = open(os.path.join(self._tmp.name, name + ".raw"), "wb")
            entry = [f, arr.dtype, arr.shape, 0]
            self._files[name] = entry
        if arr.dtype != entry[1] or arr.shape != entry[2]:
            raise ValueError(f"{name}: picture shape/dtype changed ({arr.shape} {arr.dtype} vs {entry[2]} {entry[1]})")
        entry[0].write(arr.tobytes())
        entry[3] += 1

    def close(self) -> None:
        method = zipfile.ZIP_DEFLATED if self.compress else zipfile.ZIP_STORED
        tmp_out = self.path.with_name(self.path.name + ".part")
        with zipfile.ZipFile(tmp_out, "w", compression=method, allowZip64=True) as zf:
            for name, (dtype, values) in self._lists.items():
                self._write_array(zf, name, np.asarray(values, dtype=dtype))
            for name, value in self._scalars.items():
                self._write_array(zf, name, value)
            for name, (f, dtype, shape, count) in self._files.items():
                f.close()
                header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
                          "shape": (count,) + tuple(shape)}
                with zf.open(name + ".npy", "w", force_zip64=True) as out:
                    np.lib.format.write_array_header_2_0(out, header)
                    with open(f.name, "rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        os.replace(tmp_out, self.path)
        self._tmp.cleanup()

    @staticmethod
    def _write_array(zf, name, arr):
        with zf.open(name + ".npy", "w", force_zip64=True) as out:
            np.lib.format.write_array(out, np.asarray(arr), allow_pickle=False)

    def abort(self) -> None:
        for entry in self._files.values():
            entry[0].close()
        self._tmp.cleanup()


def write_priors(writer: NpzStreamWriter, pictures, *, picture_level: bool = False, max_frames: int = 0,
                 on_picture=None) -> tuple[int, int]:
    """Appends pictures (PicturePriors, decoding order) to ``writer`` in the schema of
    docs/schema.md; ``picture_level`` leaves out the per-4x4 arrays. Returns (pictures,
    pictures with concealed damage)."""
    from ..priors import BLOCK_ARRAYS

    n = concealed = 0
    for p in pictures:
        if n == 0:
            for k in ("width", "height", "bit_depth", "bit_depth_chroma", "chroma_format", "ctb_size"):
                writer.set(k, getattr(p, k))
            writer.set("conf_win", list(p.conf_win))
        writer.append_value("poc", p.poc, "int32")
        writer.append_value("nal_type", p.nal_type, "uint8")
        writer.append_value("slice_type", p.slice_type, "uint8")
        writer.append_value("temporal_id", p.temporal_id, "uint8")
        writer.append_value("num_slice_segments", p.num_slice_segments, "int32")
        if not picture_level:
            arrays = p.arrays
            for k in BLOCK_ARRAYS:
                writer.append_array(k, arrays[k])
        n += 1
        concealed += not p.complete
        if on_picture is not None:
            on_picture(n)
        if max_frames and n >= max_frames:
            break
    return n, concealed


def save_priors(src: str | os.PathLike, dst: str | os.PathLike, *, threads: int = 1, strict: bool = False,
                compress: bool = True, picture_level: bool = False, max_frames: int = 0, **limits) -> dict:
    """The priors of one video file as one schema .npz (what ``bitsr extract`` writes), written
    atomically: ``dst`` appears complete or not at all, so a batch that was stopped can be run
    again and skip what exists. Returns {"pictures", "concealed"}; raises like
    :func:`bitsr.extract` (and ValueError for a file without a decodable picture)."""
    from .reader import extract

    writer = NpzStreamWriter(dst, compress=compress)
    try:
        n, concealed = write_priors(writer, extract(src, strict=strict, threads=threads, **limits),
                                    picture_level=picture_level, max_frames=max_frames)
        if n == 0:
            raise ValueError(f"{src}: no decodable picture found")
    except BaseException:
        writer.abort()
        raise
    writer.close()
    return {"pictures": n, "concealed": concealed}
