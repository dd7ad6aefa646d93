"""Parsing on worker threads gives exactly what one thread gives: the same pictures in the same
decoding and output order, every array, the errors of each picture and the decoder's warnings,
on the corpus and on damaged copies of it (concealment), and the same exceptions in strict mode."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from conftest import CORPUS, corpus_streams, requires_shared

import bitsr
from bitsr import _core
from bitsr.io.hevc import parse_workers
from bitsr.priors import BLOCK_ARRAYS

STREAMS = corpus_streams()
MALFORMED = sorted((CORPUS / "malformed").glob("*")) if CORPUS is not None and CORPUS.is_dir() else []


def parse(data: bytes, workers: int, *, strict: bool = False, max_in_flight: int = 0, chunk: int = 1 << 14,
          wpp_min_bytes: int = 4096, rows: list | None = None, early_flush: bool = False):
    """Everything the decoder hands out, fed in chunks and popped as a streaming reader does.
    ``rows`` receives the number of slice segments parsed by rows. ``early_flush``: the end of
    the stream is told without waiting (flush(wait=False), as bitsr.open does while FFmpeg
    decodes the last packets), then the rest is waited for."""
    # wpp_min_bytes=0 forces rows on every WPP segment, inter ones included; else the defaults
    d = _core.Decoder(strict=strict, threads=workers, max_in_flight=max_in_flight, wpp_min_bytes=wpp_min_bytes,
                      wpp_inter_min_bytes=0 if wpp_min_bytes == 0 else -1)
    pics, order = [], []

    def pop():
        pics.extend(d.pop_decoded())
        order.extend(p.decode_index for p in d.pop_output())

    try:
        for i in range(0, len(data), chunk):
            more = d.push_annexb(data[i:i + chunk], yield_pictures=1)
            pop()
            while more:
                more = d.push_annexb(b"", yield_pictures=1)
                pop()
        while d.push_annexb(b"", final=True, yield_pictures=1):
            pop()
        if early_flush:
            d.flush(wait=False)
            pop()
            d.sync()
            pop()
        d.flush()
        pop()
        error = None
    except (_core.BitstreamError, _core.LimitError, _core.UnsupportedStreamError) as e:
        error = (type(e).__name__, str(e))
        pop()  # what was finished before the error
    if rows is not None:
        rows.append(d.num_row_segments)
    return pics, order, list(d.warnings), error


def assert_same(a, b):
    pics_a, order_a, warn_a, err_a = a
    pics_b, order_b, warn_b, err_b = b
    assert err_a == err_b
    assert warn_a == warn_b
    assert order_a == order_b
    assert len(pics_a) == len(pics_b)
    for p, q in zip(pics_a, pics_b):
        assert (p.poc, p.decode_index, p.errors, p.num_ctb_decoded) == (q.poc, q.decode_index, q.errors,
                                                                         q.num_ctb_decoded)
        ap, aq = p.arrays(), q.arrays()
        for k in BLOCK_ARRAYS:
            np.testing.assert_array_equal(ap[k], aq[k], err_msg=f"{k}, picture {p.decode_index}")


def damaged(data: bytes, seed: int) -> bytes:
    """Bytes flipped in the slice data, a run zeroed, the end cut: concealment everywhere."""
    rng = random.Random(seed)
    b = bytearray(data)
    for _ in range(max(4, len(b) // 4000)):
        i = rng.randrange(min(200, len(b) - 1), len(b))
        b[i] ^= 1 << rng.randrange(8)
    i = rng.randrange(len(b) // 4, len(b))
    b[i:i + 64] = bytes(len(b[i:i + 64]))
    return bytes(b[: rng.randrange(len(b) * 3 // 4, len(b))])


@requires_shared
@pytest.mark.parametrize("stream", STREAMS + MALFORMED, ids=[s.name for s in STREAMS + MALFORMED])
def test_threads_give_what_one_thread_gives(stream):
    data = stream.read_bytes()
    one = parse(data, 0)
    for workers in (1, 2, 4):
        assert_same(one, parse(data, workers))
    assert_same(one, parse(data, 2, max_in_flight=1))  # the smallest window: waits at every picture
    assert_same(one, parse(data, 2, early_flush=True))
    # every WPP segment with entry points parsed by rows, however small
    for workers in (2, 4):
        assert_same(one, parse(data, workers, wpp_min_bytes=0))


@requires_shared
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("stream", STREAMS[::3], ids=[s.name for s in STREAMS[::3]])
def test_threads_conceal_damage_as_one_thread_does(stream, seed):
    data = damaged(stream.read_bytes(), seed)
    for strict in (False, True):
        one = parse(data, 0, strict=strict)
        assert_same(one, parse(data, 2, strict=strict))
        assert_same(one, parse(data, 3, strict=strict, max_in_flight=2))
        assert_same(one, parse(data, 2, strict=strict, wpp_min_bytes=0))


WPP_STREAMS = [s for s in STREAMS if s.name in ("bbb720_wpp_slices4.hevc", "bbb1080up_crf35.hevc",
                                                "bbb1080_singleslice.265")]


@requires_shared
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("stream", WPP_STREAMS, ids=[s.name for s in WPP_STREAMS])
def test_wpp_rows_in_parallel_give_what_one_thread_gives(stream, seed):
    """CTB rows of one slice segment parsed by several threads: damage anywhere in a row (an
    error, a segment ending early, an entry point that does not match) must leave exactly the
    priors, concealment, warnings and errors of one thread: the rows after it are discarded."""
    data = stream.read_bytes() if seed == 0 else damaged(stream.read_bytes(), 100 + seed)
    rows = []
    for strict in (False, True):
        one = parse(data, 0, strict=strict)
        for workers in (2, 4):
            assert_same(one, parse(data, workers, strict=strict, wpp_min_bytes=0, rows=rows))
    if seed == 0:
        assert min(rows) > 0  # the rows were parsed in parallel (damage may break the entry points)


def test_parse_workers_and_bad_arguments():
    assert parse_workers(1) == 0 and parse_workers(2) == 1 and parse_workers(3) == 2 and parse_workers(0) >= 0
    with pytest.raises(ValueError, match="threads"):
        parse_workers(-1)
    with pytest.raises(ValueError, match="threads"):
        _core.Decoder(threads=-2)
    with pytest.raises(ValueError, match="max_in_flight"):
        _core.Decoder(threads=2, max_in_flight=-1)
    d = _core.Decoder(threads=3)
    assert d.threads == 3 and d.max_in_flight == 13 and d.num_row_segments == 0


@requires_shared
def test_extract_and_open_with_threads_match_one_thread():
    stream = next(s for s in STREAMS if s.name.startswith("bbb720_wpp"))
    one = [p.arrays["mv"].copy() for p in bitsr.extract(stream, threads=1)]
    two = [p.arrays["mv"].copy() for p in bitsr.extract(stream, threads=2)]
    assert len(one) == len(two) > 1 and all(np.array_equal(a, b) for a, b in zip(one, two))
    frames = {}
    for t in (1, 2):
        with bitsr.open(stream, threads=t) as video:
            frames[t] = [(f.priors.poc, f.priors.mv.copy(), f.rgb.copy()) for f in video]
    assert len(frames[1]) == len(frames[2]) == len(one)
    for (pa, ma, ra), (pb, mb, rb) in zip(frames[1], frames[2]):
        assert pa == pb and np.array_equal(ma, mb) and np.array_equal(ra, rb)


def test_a_forked_child_can_drop_a_threaded_decoder():
    """DataLoader workers and multiprocessing fork: the child has the pool but not its threads,
    and destroying the decoder there must not wait for them (it used to hang)."""
    import subprocess
    import sys

    code = """
import os
from bitsr import _core
d = _core.Decoder(threads=2)
pid = os.fork()
if pid == 0:
    del d
    os._exit(7)
_, status = os.waitpid(pid, 0)
assert os.WEXITSTATUS(status) == 7
del d
print("ok")
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr


def test_worker_threads_are_reused_across_decoders_and_forks():
    """Worker threads park when a decoder goes and serve the next one (no thread per decoder);
    a forked child, which has none of them, starts its own and parses the same."""
    import subprocess
    import sys

    from streams import make_hevc

    stream = make_hevc("park", frames=8, width=128, height=96, x265_params="bframes=2")
    code = """
import os, sys
sys.path[:0] = [%r, %r]  # this process's bitsr (a sanitizer build under tools/test_sanitized.py) first
from test_threads import parse
from bitsr import _core
from bitsr.priors import BLOCK_ARRAYS
data = open(%r, "rb").read()

def digest(workers):
    pics, order, warn, err = parse(data, workers)
    return [(p.poc, [p.arrays()[k].tobytes() for k in BLOCK_ARRAYS]) for p in pics], order, warn, err

ref = digest(0)
for _ in range(30):
    assert digest(2) == ref
n = _core.parked_threads()
assert 2 <= n <= 4, n
if "libtsan" not in os.environ.get("LD_PRELOAD", ""):  # TSan does not start threads after a fork
    pid = os.fork()
    if pid == 0:
        ok = digest(2) == ref and digest(3) == ref
        os._exit(7 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 7, status
    assert _core.parked_threads() == n
print("ok")
""" % (str(Path(_core.__file__).parent.parent), str(Path(__file__).parent), str(stream))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr
