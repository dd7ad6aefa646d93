"""bitsr-extract's display-order pass: MV flow (.npz arrays and .flo files), the per-frame
JSON summary and the --viz pictures/video."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np


class DisplayOutputs:
    def __init__(self, args, writer, npz_path: str, offsets: list[int]):
        self.args, self.writer, self.offsets = args, writer, offsets
        stem = Path(args.input).stem
        self.stem = stem
        self.flo_dir = None
        if args.flow and (args.flo_dir or "").lower() != "none":
            base = npz_path[:-4] if npz_path.endswith(".npz") else npz_path
            self.flo_dir = Path(args.flo_dir or base + ".flo")
        if self.flo_dir is not None or args.viz:
            try:
                import mmcv  # noqa: F401  (flowwrite, flow2rgb)
            except ImportError:
                raise ValueError("--flow .flo files and --viz need mmcv-lite (pip install 'bitsr[flow]')") from None
        self.viz_dir = Path(args.viz) if args.viz else None
        for flag, d in (("--viz", self.viz_dir), ("--flo-dir", self.flo_dir)):
            if d is not None and d.exists() and not d.is_dir():
                raise ValueError(f"{flag} {d}: exists and is not a folder")
        if self.viz_dir is not None:
            self.viz_dir.mkdir(parents=True, exist_ok=True)
        if self.flo_dir is not None:
            self.flo_dir.mkdir(parents=True, exist_ok=True)
        self.json_file = None
        if args.json is not None:
            if args.json == "-":
                self.json_file = sys.stdout
            else:
                jp = args.json or os.path.splitext(args.input)[0] + ".json"
                self.json_file = open(jp, "w")
        self._json_count = 0
        self._video = None
        self.n = 0

    # -- per frame
    def run(self) -> None:
        args = self.args
        window = max([abs(k) for k in self.offsets] + [1])
        if self.viz_dir is not None:
            from ..io.reader import open as open_video

            reader = open_video(args.input, strict=args.strict, lookahead=window)
            self._fps = float(reader.fps) if reader.fps else 25.0
            frames = iter(reader)
        else:
            from ..io.reader import iter_frames

            frames = iter_frames(args.input, strict=args.strict, lookahead=window)
        bar = None
        if not args.quiet:
            from tqdm import tqdm

            bar = tqdm(unit="frame", desc="flow/summary/viz", file=sys.stderr, dynamic_ncols=True)
        try:
            for fr in frames:
                self.frame(fr)
                self.n += 1
                if bar is not None:
                    bar.update(1)
                if args.max_frames and self.n >= args.max_frames:
                    break
        finally:
            if bar is not None:
                bar.close()
        if self.n == 0:
            raise ValueError(f"{args.input}: no picture to output")

    def frame(self, fr) -> None:
        args = self.args
        flows = {k: fr.flow(k, factor=args.flow_factor) for k in self.offsets}
        if flows and self.writer is not None:
            self.writer.append_array("flow", np.stack([flows[k][0] for k in self.offsets]))
            self.writer.append_array("flow_confidence", np.stack([flows[k][1] for k in self.offsets]))
            self.writer.append_value("flow_display_index", fr.display_index, "int32")
            self.writer.append_value("flow_poc", fr.poc, "int32")
            self.writer.append_value("flow_decode_index", fr.decode_index, "int32")
            if self.n == 0:
                self.writer.set("flow_offsets", np.array(self.offsets, np.int32))
                self.writer.set("flow_factor", args.flow_factor)
        if self.flo_dir is not None:
            from mmcv import flowwrite

            for k, (f, _) in flows.items():
                flowwrite(np.ascontiguousarray(np.moveaxis(f, 0, -1)),
                          str(self.flo_dir / f"{fr.display_index:06d}_{k:+d}.flo"))
        if self.json_file is not None:
            self.write_json(fr, flows)
        if self.viz_dir is not None:
            self.write_viz(fr, flows)

    def write_json(self, fr, flows) -> None:
        from ..maps import picture_summary

        p = fr.priors
        if self._json_count == 0:
            l, r, t, b = p.conf_win
            head = {"input": os.path.abspath(self.args.input),
                    "stream": {"coded_size": [p.width, p.height], "size": [p.width - l - r, p.height - t - b],
                               "conf_win": list(p.conf_win), "bit_depth": p.bit_depth,
                               "chroma_format": p.chroma_format, "ctb_size": p.ctb_size}}
            self.json_file.write(json.dumps(head)[:-1] + ', "frames": [\n')
        rec = {"display_index": fr.display_index, "decode_index": p.decode_index, "poc": p.poc,
               "type": p.picture_type, "nal_type": p.nal_type, "temporal_id": p.temporal_id,
               "cvs_index": p.cvs_index}
        rec.update(picture_summary(p))
        if flows:
            rec["flow"] = {f"{k:+d}": {"mean_px": round(float(np.hypot(f[0], f[1]).mean() * self.args.flow_factor), 3),
                                       "mean_confidence": round(float(c.mean()), 3)} for k, (f, c) in flows.items()}
        self.json_file.write((",\n" if self._json_count else "") + json.dumps(rec))
        self._json_count += 1

    def write_viz(self, fr, flows) -> None:
        import cv2

        from ..viz import auto_scale, render

        # flow to the previous frame; the first frame shows its flow to the next one
        flow, conf, k = None, None, -1
        for k in (-1, 1):
            nb = fr.window[k] if fr.window is not None and abs(k) <= fr.window.size else None
            if nb is not None and nb.cvs_index == fr.priors.cvs_index:
                flow, conf = fr.flow(k)
                break
        else:
            k = -1
        rgb = fr.rgb
        s = self.args.viz_scale or auto_scale(rgb.shape[0])
        img = render(rgb, fr.priors, flow, conf, scale=s, k=k,
                     title=f"frame {fr.display_index}  POC {fr.poc}  {fr.picture_type}")
        cv2.imwrite(str(self.viz_dir / f"{self.stem}_{fr.display_index:06d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        self._encode(img)

    def _encode(self, img) -> None:
        from fractions import Fraction

        import av

        if self._video is None:
            path = self.viz_dir / f"{self.stem}_viz.mp4"
            c = av.open(str(path), "w")
            st = c.add_stream("libx264", rate=Fraction(self._fps).limit_denominator(1001))
            st.width, st.height = img.shape[1] & ~1, img.shape[0] & ~1
            st.pix_fmt = "yuv420p"
            st.options = {"crf": "20", "preset": "veryfast"}
            self._video = (c, st)
        c, st = self._video
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[: st.height, : st.width]), format="rgb24")
        for pkt in st.encode(frame):
            c.mux(pkt)

    def close(self) -> None:
        if self.json_file is not None:
            if self._json_count:
                self.json_file.write("\n]}\n")
            if self.json_file is not sys.stdout:
                self.json_file.close()
            else:
                self.json_file.flush()
        if self._video is not None:
            c, st = self._video
            for pkt in st.encode(None):
                c.mux(pkt)
            c.close()
            self._video = None
