"""HEVC input: bitsr's own parser for the priors, FFmpeg (PyAV) for the pixels.

``extract_hevc`` parses without decoding pixels (raw Annex B files are fed to the parser
directly, containers are demuxed by PyAV). :class:`HevcSource` is the HEVC half of
:class:`bitsr.Reader`: one pass over the container's packets feeds both the parser (priors)
and FFmpeg's decoder (pixels); the parser gets each packet first, so its limits also protect
FFmpeg. A raw Annex B file has no container: :class:`RawHevcFile` splits it into access units
with FFmpeg's HEVC parser, as FFmpeg's raw demuxer would, for a codec context of our own,
which spares the stream probe of ``av.open`` (it decodes the first pictures).

Pairing. Every packet is numbered and the number rides through FFmpeg on the packet's
``opaque`` field (``copy_opaque``), so each output frame names the access unit it was
decoded from, and through it the parsed picture. The parser's own output order (it runs
the DPB output process, C.5.2) is the cross-check: when FFmpeg outputs a picture earlier
than the parser would, the parser is bumped; pictures the parser outputs but FFmpeg never
does (e.g. FFmpeg failed to decode them) are dropped with a warning, and frames FFmpeg
outputs for which the parser has no picture are skipped with a warning (``strict=True``
raises instead). Both sides drop pictures before the first IRAP picture and the RASL
pictures of a CRA picture that starts decoding; pictures still waiting for output when a CRA
picture starts a new CVS (after an EOS NAL unit) are discarded, as C.5.2.2 requires.

Overlap. The parser's workers run at the lowest scheduling priority (``idle_parser``, the
default), so FFmpeg's threads, which bound the pass, are never kept waiting for a core; the
parser takes the time they leave. It gets each packet ``PARSE_AHEAD`` packets before FFmpeg
does, so that it has a picture to parse whenever FFmpeg's threads leave a core idle (they
wait for their reference pictures' rows, or for the calling thread). A frame whose picture
the workers have not finished waits (at most ``FRAMES_AHEAD`` frames, and
``FRAMES_AHEAD_BYTES`` of pixels) while FFmpeg goes on with the next packets; past that, the
calling thread parses.
"""
from __future__ import annotations

import collections
import os
from fractions import Fraction
from typing import Callable, Iterator, Optional

import av

from .. import _core
from ..priors import PicturePriors
from .demux import av_errors, decode, iter_packets, named_errors, open_container, packet_offset, select_stream
from .formats import is_raw

CRA_NUT = 21
# Packets the parser gets before FFmpeg (HevcSource). With none, the parser's workers idled
# whenever the calling thread was blocked in FFmpeg's decode (it hands both their packets),
# and the parse was left to the end of the file (bitsr.open / FFmpeg at 2 threads, fresh
# processes: realworld_720p 0.76 -> 0.82, a 60-frame 7.5 Mbit/s 1080p stream 0.87 -> 0.90);
# 8 or more delay FFmpeg's first packets behind the parser's work on them.
PARSE_AHEAD = 4
# FFmpeg frames that may wait for their priors (HevcSource), and the pixels they may hold.
# Each frame held is a buffer FFmpeg allocates and faults in afresh (per file), but waiting
# lets the idle workers parse where the calling thread would take a core from FFmpeg: with
# PARSE_AHEAD, 16 beat 4 on the short 1080p streams (1080p.h265 0.83 -> 0.94). The byte bound
# keeps 4K frames (12-25 MB each) to a few.
FRAMES_AHEAD = 16
FRAMES_AHEAD_BYTES = 48 << 20

# Parser limits accepted by make_decoder, bitsr.extract() and bitsr.open(); defaults in
# _core.Decoder.default_limits (csrc/hevc/limits.h, README "Hostile input").
LIMITS = tuple(_core.Decoder.default_limits)


def check_limits(limits: dict) -> None:
    """TypeError for a limit name the parser does not know."""
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise TypeError(f"unknown limit(s) {', '.join(unknown)}; known: {', '.join(LIMITS)}")


def parse_workers(threads: int) -> int:
    """Worker threads of the parser for a user's ``threads`` (0: one per core): ``threads - 1``,
    since the calling thread parses too while it waits for a picture; 1 parses in the calling
    thread alone."""
    threads = int(threads)
    if threads < 0:
        raise ValueError(f"threads must be >= 0, got {threads}")
    if threads == 0:
        threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return min(threads, 256) - 1 if threads > 1 else 0


def make_decoder(strict: bool = False, *, workers: int = 0, max_in_flight: int = 0, background: bool = False,
                 **limits) -> "_core.Decoder":
    """The parser with resource limits (see LIMITS; 0 or None keeps the default). ``workers``
    threads parse slice data in the background (0: in the calling thread); ``max_in_flight``
    bounds the pictures they hold (0: the default, 3 * workers + 4); ``background`` runs them
    at the lowest scheduling priority, so that they take only the CPU time FFmpeg leaves."""
    check_limits(limits)
    return _core.Decoder(strict=strict, threads=workers, max_in_flight=max_in_flight, background=background,
                         **{k: v for k, v in limits.items() if v})


def warning_summary(dec: "_core.Decoder", n: int = 3) -> str:
    """The parser's first warnings, for an error message (empty when there are none)."""
    w = list(dec.warnings)
    if dec.num_skipped_pictures:
        w.insert(0, f"{dec.num_skipped_pictures} picture(s) skipped before the first IRAP picture or as RASL")
    return f" ({'; '.join(w[:n])}{'; ...' if len(w) > n else ''})" if w else ""


def feed_extradata(decoder: "_core.Decoder", stream: "av.VideoStream") -> int:
    """Gives the stream's parameter sets (hvcC or Annex B extradata) to the parser; returns
    the NAL length size of the packets (0: Annex B)."""
    extra = stream.codec_context.extradata
    if not extra:
        return 0
    if extra[:1] == b"\x01" and len(extra) >= 23:  # hvcC (ISO/IEC 14496-15)
        return decoder.push_hvcc(extra)
    decoder.push_annexb(extra, final=True)
    return 0


def _finished(decoder: "_core.Decoder") -> list:
    """Pictures finished since the last call, decoding order. The output-order queue, which
    decoding-order readers do not use, is emptied too: it would keep every picture alive."""
    decoder.pop_output()
    return decoder.pop_decoded()


def iter_pictures(decoder: "_core.Decoder", chunks) -> Iterator["_core.Picture"]:
    """Feeds Annex B chunks and yields finished pictures as they complete.

    The parser stops once a finished picture waits (``yield_pictures``), so a chunk full of
    tiny pictures never holds more than a few in memory: one, or with worker threads the
    pictures they may hold anyway (``max_in_flight``), which spares a hand-off per picture.
    """
    n = decoder.max_in_flight if decoder.threads else 1
    for chunk in chunks:
        more = decoder.push_annexb(chunk, yield_pictures=n)
        yield from _finished(decoder)
        while more:
            more = decoder.push_annexb(b"", yield_pictures=n)
            yield from _finished(decoder)
    while decoder.push_annexb(b"", final=True, yield_pictures=n):
        yield from _finished(decoder)
    decoder.flush()
    yield from _finished(decoder)


def _file_chunks(path, size=1 << 20):
    with open(path, "rb") as f:
        size = max(1, min(size, os.fstat(f.fileno()).st_size + 1))  # (a small file: no 1 MB buffer)
        while True:
            b = f.read(size)
            if not b:
                return
            yield b


def _container_pictures(path: str, decoder: "_core.Decoder") -> Iterator["_core.Picture"]:
    with open_container(path) as c:
        s = select_stream(c, "hevc")
        length_size = feed_extradata(decoder, s)
        for pkt in iter_packets(c, s, path):
            decoder.push_packet(pkt, length_size=length_size, offset=packet_offset(pkt))
            yield from _finished(decoder)
    decoder.flush()
    yield from _finished(decoder)


def extract_hevc(path: str, *, strict: bool = False, threads: int = 1, max_in_flight: int = 0,
                 **limits) -> Iterator[PicturePriors]:
    """Priors of every decoded picture of an HEVC file (checked path), decoding order. The
    parser is made (and its limits checked) now; parsing starts at the first next()."""
    dec = make_decoder(strict, workers=parse_workers(threads), max_in_flight=max_in_flight, **limits)
    return _extract(path, dec)


def _extract(path: str, dec: "_core.Decoder") -> Iterator[PicturePriors]:
    pics = iter_pictures(dec, _file_chunks(path)) if is_raw(path, "hevc") else _container_pictures(path, dec)
    n = 0
    with named_errors(path):
        for pic in pics:
            n += 1
            yield PicturePriors(pic)
    if n == 0:
        raise _core.BitstreamError(f"{path}: no decodable HEVC picture found" + warning_summary(dec))


class _RawStream:
    """What Reader reads of a PyAV stream, for a raw stream decoded without a container: the
    values FFmpeg's raw demuxer gives (time base 1/1200000, nominal rate 25 when the stream
    signals none, no duration); size and frame rate are the parser's, from the first SPS."""

    index = 0
    time_base = Fraction(1, 1200000)
    average_rate = guessed_rate = Fraction(25)
    duration = None
    frames = 0

    def __init__(self, codec_context: "av.CodecContext"):
        self.codec_context = codec_context


class RawHevcFile:
    """A raw Annex B HEVC file as FFmpeg's HEVC parser splits it into access units: the
    packets (and byte offsets) its raw demuxer makes, for a codec context of our own."""

    duration = None  # (as Reader reads it of a container)

    def __init__(self, path: str):
        self.path = path
        self._chunks = _file_chunks(path)
        try:
            self.stream = _RawStream(av.CodecContext.create("hevc", "r"))
            self._queue: collections.deque = collections.deque()
            self._eof = False
            self._fill()  # the first chunk: the parser reads the size and frame rate from its SPS
        except BaseException:
            self._chunks.close()
            raise

    def _fill(self) -> None:
        b = next(self._chunks, b"")
        self._eof = not b
        with av_errors(self.path, "cannot split into access units"):
            self._queue.extend(self.stream.codec_context.parse(b or None))

    def packets(self) -> Iterator[tuple["av.Packet", int]]:
        """(packet, byte offset in the file), in file order."""
        pos = 0
        while self._queue or not self._eof:
            if not self._queue:
                self._fill()
                continue
            p = self._queue.popleft()
            if p.size:
                yield p, pos
            pos += p.size

    def close(self) -> None:
        self._chunks.close()  # (closes the file)


class HevcSource:
    """The HEVC half of :class:`bitsr.Reader`: (priors, FFmpeg frame, pts) in display order.
    See the module doc for the pairing; ``warn(message)`` receives the disagreements."""

    codec = "hevc"

    def __init__(self, path: str, *, strict: bool, threads: int, limits: dict, warn: Callable[[str], None],
                 idle_parser: bool = True):
        self.path, self.strict, self._warn = path, strict, warn
        # The parser works in the background (at least one worker) while FFmpeg decodes.
        self._decoder = make_decoder(strict, workers=max(1, parse_workers(threads)), background=idle_parser, **limits)
        self.is_raw = is_raw(path, "hevc")
        # A raw stream is split into access units and decoded without a container: FFmpeg's
        # stream probe (avformat_find_stream_info) would decode its first pictures first, 2-16
        # ms on one core that the parser cannot use, as no packet is read yet.
        self.container = RawHevcFile(path) if self.is_raw else open_container(path)
        try:
            self.stream = self.container.stream if self.is_raw else select_stream(self.container, "hevc")
            cc = self.stream.codec_context
            cc.thread_type = "AUTO"
            cc.thread_count = int(threads)  # 0: FFmpeg picks
            cc.copy_opaque = True
            with named_errors(path):
                self._length_size = feed_extradata(self._decoder, self.stream)
        except BaseException:
            self.container.close()
            raise
        # Pairing state, all bounded by the DPB size plus FFmpeg's frame-thread delay.
        self._pending: dict[int, tuple] = {}  # decode_index -> (Picture, packet number, pts)
        self._by_packet: dict[int, list[int]] = {}  # packet number -> decode indices
        self._order: collections.deque = collections.deque()  # parser output order
        self._in_order: set[int] = set()
        self._cvs_starts: collections.deque = collections.deque(maxlen=8)  # (cvs_index, nal_type)
        self._packet_of: dict[int, tuple] = {}  # decode_index -> (packet number, pts), until parsed
        self._keep: Optional[int] = None  # frames that may wait (FRAMES_AHEAD), set by the first frame
        self._peeked: dict[int, PicturePriors] = {}  # decode_index -> its priors, given by peek_priors

    @property
    def num_skipped_pictures(self) -> int:
        return self._decoder.num_skipped_pictures

    def empty_message(self) -> str:
        """Why no frame came out (for the error when none did)."""
        return f"{self.path}: no decodable HEVC picture found" + warning_summary(self._decoder)

    def peek_priors(self, k: int) -> Optional[PicturePriors]:
        """Priors of the k-th frame after the last one ``frames()`` gave, as far as the
        parser's output order knows them already (None otherwise): a frame's window of later
        priors then needs no later frame from FFmpeg, whose frames come after the parser's
        pictures (the Reader's ``lookahead``). Should FFmpeg not output that picture after all
        (it failed to decode it: a warning says so), the frames beside it still had it in
        their windows."""
        if k > len(self._order):
            return None
        d = self._order[k - 1]
        pp = self._peeked.get(d)
        if pp is None:
            pp = self._peeked[d] = PicturePriors(self._pending[d][0])
        return pp

    # -- one pass: parser first, then FFmpeg --------------------------------------------
    def frames(self) -> Iterator[tuple[PicturePriors, "av.VideoFrame", Optional[int]]]:
        with named_errors(self.path):
            yield from self._pass()

    def _pass(self):
        dec, cc = self._decoder, self.stream.codec_context
        waiting: collections.deque = collections.deque()  # FFmpeg's frames, in its output order
        packets = self.container.packets() if self.is_raw else (
            (p, packet_offset(p)) for p in iter_packets(self.container, self.stream, self.path))
        ahead: collections.deque = collections.deque()  # packets parsed, not yet given to FFmpeg
        for n, (packet, offset) in enumerate(packets):
            first = dec.num_pictures_started
            dec.push_packet(packet, length_size=self._length_size, offset=offset)
            # Pictures begun by this packet are its own, whenever the workers hand them out.
            for d in range(first, dec.num_pictures_started):
                self._packet_of[d] = (n, packet.pts)
            self._take_pictures()
            # A fresh object per packet: PyAV keys opaque values by id(), so a shared small
            # int would be released by whichever frame holding it dies first.
            packet.opaque = (n,)
            ahead.append(packet)
            if len(ahead) > PARSE_AHEAD:
                yield from self._decode(ahead.popleft(), waiting)
        # The parser has the whole stream: its last pictures go to its output order now (as
        # far as parsed), for the windows of the frames FFmpeg is still to give.
        dec.flush(wait=False)
        self._take_pictures()
        while ahead:
            yield from self._decode(ahead.popleft(), waiting)
        dec.flush()
        self._take_pictures()
        waiting.extend(decode(cc, None, self.path, self.strict, self._warn))
        yield from self._paired(waiting, 0)
        for d in list(self._order) + [d for d in self._pending if d not in self._in_order]:
            self._drop(d, "FFmpeg did not output it")

    def _decode(self, packet, waiting: collections.deque):
        """FFmpeg decodes the packet; its frames join those waiting, which are paired as far as
        their priors are ready, and beyond the frames that may wait however long that takes."""
        frames = decode(self.stream.codec_context, packet, self.path, self.strict, self._warn)
        if frames and self._keep is None:
            size = sum(p.buffer_size for p in frames[0].planes)
            self._keep = min(FRAMES_AHEAD, max(2, FRAMES_AHEAD_BYTES // max(1, size)))
        waiting.extend(frames)
        yield from self._paired(waiting, FRAMES_AHEAD if self._keep is None else self._keep)

    def _paired(self, waiting: collections.deque, keep: int):
        """Pairs the waiting frames, in order, while their pictures are ready, and the rest
        beyond ``keep`` waiting ones however long the parser takes."""
        while waiting:
            if len(waiting) <= keep and not self._ready(waiting[0]):
                self._take_pictures()
                if not self._ready(waiting[0]):
                    return
            fr = self._pair(waiting.popleft())
            if fr is not None:
                yield fr

    def _ready(self, f: "av.VideoFrame") -> bool:
        """_pair(f) would not wait for the parser: the pictures of f's packet are parsed and in
        the parser's output order (or the packet has none, which _pair reports)."""
        packet = f.opaque[0] if f.opaque is not None else None
        ids = self._by_packet.get(packet)
        if not ids:
            return packet is None or not self._parsing(packet)
        return all(d in self._in_order for d in ids)

    def _parsing(self, packet: int) -> bool:
        """A picture of this packet is begun and not yet handed out by the parser's workers."""
        return any(p == packet for p, _ in self._packet_of.values())

    def _take_pictures(self) -> None:
        # Output order first: with workers, a picture the parser output before a CRA that
        # starts a new sequence can arrive in one call with that CRA, and it must not be taken
        # for one of those the CRA discards.
        for pic in self._decoder.pop_output():
            self._order.append(pic.decode_index)
            self._in_order.add(pic.decode_index)
        for pic in self._decoder.pop_decoded():
            packet, pts = self._packet_of.pop(pic.decode_index, (None, None))
            # push_packet ends the access unit, so a picture comes out with its own packet;
            # pictures with pic_output_flag 0 are output by neither side.
            if not self._cvs_starts or self._cvs_starts[-1][0] != pic.cvs_index:
                self._cvs_starts.append((pic.cvs_index, pic.nal_type))
                if pic.nal_type == CRA_NUT:
                    # A CRA starting a CVS (after an end-of-sequence NAL unit) implies
                    # NoOutputOfPriorPicsFlag = 1 (C.5.2.2): the parser and FFmpeg both discard
                    # the earlier pictures still waiting for output.
                    for d in [d for d, v in self._pending.items()
                              if v[0].cvs_index < pic.cvs_index and d not in self._in_order]:
                        self._drop(d, "discarded at the start of a new sequence")
            if pic.pic_output_flag:
                self._pending[pic.decode_index] = (pic, packet, pts)
                self._by_packet.setdefault(packet, []).append(pic.decode_index)

    def _pair(self, f: "av.VideoFrame"):
        tag = f.opaque
        packet = tag[0] if tag is not None else None
        ids = self._by_packet.get(packet)
        if not ids and packet is not None and self._parsing(packet):
            self._decoder.sync()  # FFmpeg is ahead of the parser's workers: wait for them
            self._take_pictures()
            ids = self._by_packet.get(packet)
        if not ids:
            self._problem(f"FFmpeg output a frame (packet {packet}, pts {f.pts}) for which the parser has "
                          "no picture; frame skipped")
            return None
        d = ids[0]
        if len(ids) > 1:  # several pictures in one packet: the earliest in output order
            d = min(ids, key=lambda i: self._order.index(i) if i in self._in_order else len(self._order))
        ids.remove(d)
        if not ids:
            del self._by_packet[packet]
        if d not in self._in_order:  # the workers may still hold the output order
            self._decoder.sync()
            self._take_pictures()
        while d not in self._in_order and self._decoder.bump_one():
            self._take_pictures()
        if d in self._in_order:
            while self._order[0] != d:
                self._drop(self._order[0], "FFmpeg output a later picture first")
            self._order.popleft()
            self._in_order.discard(d)
        else:
            self._problem(f"FFmpeg output picture decode_index {d} that the parser does not output")
        pic, _, pts = self._pending.pop(d)
        pp = self._peeked.pop(d, None) or PicturePriors(pic)
        return pp, f, (f.pts if f.pts is not None else pts)

    def _drop(self, d: int, why: str) -> None:
        if d in self._in_order:
            self._order.remove(d)
            self._in_order.discard(d)
        pic, packet, _ = self._pending.pop(d)
        self._peeked.pop(d, None)
        ids = self._by_packet.get(packet)
        if ids is not None:
            ids.remove(d)
            if not ids:
                del self._by_packet[packet]
        if (pic.cvs_index + 1, CRA_NUT) in self._cvs_starts:
            return  # discarded by design, see _take_pictures
        self._problem(f"picture POC {pic.poc} (decode_index {d}) has no FFmpeg frame: {why}; dropped")

    def _problem(self, msg: str) -> None:
        if self.strict:
            raise _core.BitstreamError(f"{self.path}: {msg}")
        self._warn(msg)
