"""MV flow and maps on real encoded content (x265 via tests/streams.py): the flow must
explain the decoded pictures better than no motion, I-pictures included, and the reader's
window rules (offset limits, stream ends, coded video sequence boundaries) must hold."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from streams import make_h264, make_hevc

import bitsr
from bitsr.flow import mv_flow


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    h, w = img.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return cv2.remap(img, xx + flow[0], yy + flow[1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def psnr(a, b, mask=None) -> float:
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        d = d[mask]
    return 10 * np.log10(255.0**2 / max(d.mean(), 1e-10))


@pytest.fixture(scope="module")
def frames():
    path = make_hevc("flow-city", frames=12, width=352, height=288)
    with bitsr.open(path, lookahead=2) as video:
        return [(f, f.yuv()[0]) for f in video]


def test_warp_with_mv_flow_beats_zero_flow(frames):
    gains, conf_gains = [], []
    for (_, y_prev), (cur, y) in zip(frames, frames[1:]):
        flow, conf = cur.flow(-1)
        assert flow.shape == (2,) + y.shape and conf.shape == y.shape
        assert 0 <= conf.min() and conf.max() <= 1
        warped = warp(y_prev, flow)
        gains.append(psnr(warped, y) - psnr(y_prev, y))
        sure = conf >= 0.5
        conf_gains.append(psnr(warped, y, sure) - psnr(warped, y))
    assert min(gains) > 1.0 and np.mean(gains) > 4.0, gains
    # confident pixels are better explained than the picture as a whole
    assert np.mean(conf_gains) > 0.0, conf_gains


def test_iframe_flow_from_its_neighbours(frames):
    (f0, y0), (_, y1) = frames[0], frames[1]
    assert f0.picture_type == "I"
    flow, conf = f0.flow(1)
    assert np.abs(flow).mean() > 0.2 and conf.mean() > 0.4
    assert psnr(warp(y1, flow), y0) > psnr(y1, y0) + 3.0
    # no picture before the first one
    flow, conf = f0.flow(-1)
    assert not flow.any() and not conf.any()


def test_window_limits_resolution_and_torch(frames):
    torch = pytest.importorskip("torch")
    f, y = frames[5]
    with pytest.raises(ValueError, match="lookahead"):
        f.flow(3)
    for k in (-2, 2):
        flow, conf = f.flow(k)
        assert np.abs(flow).mean() > 0.2
    flow4, conf4 = f.flow(-1, factor=4, interp="bilinear")
    assert flow4.shape == (2, y.shape[0] // 4, y.shape[1] // 4)
    full, _ = f.flow(-1, interp="bilinear")
    # a quarter-size flow is the full one sampled and scaled
    np.testing.assert_allclose(flow4 * 4, full[:, 2::4, 2::4], atol=0.6)
    ft, ct = f.flow(-1, as_torch=True)
    assert isinstance(ft, torch.Tensor) and ft.shape == (2,) + y.shape
    # the frame's own flow function and the low-level one agree
    win = f.window
    direct = mv_flow(f.priors, win[-1], win.others(0, -1))
    np.testing.assert_array_equal(direct[0], f.flow(-1)[0])


def test_maps_on_real_stream(frames):
    f, y = frames[3]
    m = f.maps("all")
    for name, a in m.items():
        assert a.shape == y.shape, name
    a = f.priors.arrays
    g = f.maps(["pred_mode", "cu_log2", "qp"], factor=4)
    np.testing.assert_array_equal(g["pred_mode"], a["pred_mode"])
    np.testing.assert_array_equal(g["cu_log2"], a["cu_log2"])
    np.testing.assert_array_equal(g["qp"], a["qp_y"])
    assert (m["skip"] <= m["inter"]).all() and (m["intra"] + m["inter"] == 1).all()
    split_pu = split_tu = 0
    for f, _ in frames:
        e = f.maps(["cu_edges", "pu_edges", "tu_edges"])
        cu, pu, tu = e["cu_edges"], e["pu_edges"], e["tu_edges"]
        # CU boundaries are PU and TU boundaries
        assert ((cu & ~pu) == 0).all() and ((cu & ~tu) == 0).all()
        split_pu += int((pu != cu).any())
        split_tu += int((tu != cu).any())
    assert split_pu and split_tu


def test_no_flow_across_an_idr():
    path = make_hevc("flow-idr", frames=10, width=176, height=144,
                     x265_params="keyint=5:min-keyint=5:open-gop=0:scenecut=0:bframes=2")
    with bitsr.open(path, lookahead=1) as video:
        fr = list(video)
    cvs = [f.priors.cvs_index for f in fr]
    assert len(set(cvs)) >= 2, cvs
    checked = 0
    for a, b in zip(fr, fr[1:]):
        flow, conf = b.flow(-1)
        if a.priors.cvs_index != b.priors.cvs_index:
            assert not flow.any() and not conf.any()
            checked += 1
        else:
            assert conf.max() > 0
    assert checked >= 1
    # the pixel-free display-order iterator sees the same frames and the same flow
    from bitsr import iter_frames

    pf = list(iter_frames(path, lookahead=1))
    assert [(f.poc, f.priors.cvs_index) for f in pf] == [(f.poc, f.priors.cvs_index) for f in fr]
    for a, b in zip(pf, fr):
        np.testing.assert_array_equal(a.flow(-1)[1], b.flow(-1)[1])


def test_h264_priors_give_flow_too():
    # H.264 priors come in the same schema (bitsr/io/h264.py): the rasterizer serves them
    path = make_h264("flow-h264", frames=8, width=352, height=288)
    with bitsr.open(path, lookahead=1) as video:
        fr = [(f, f.yuv()[0]) for f in video]
    gains = []
    for (_, y_prev), (cur, y) in zip(fr, fr[1:]):
        flow, conf = cur.flow(-1)
        gains.append(psnr(warp(y_prev, flow), y) - psnr(y_prev, y))
    assert np.mean(gains) > 4.0, gains


def test_unpickled_priors_are_accepted():
    """Arrays that went through pickle (worker processes) carry an equal, not the same, dtype
    object; the rasterizer takes them and gives the same flow."""
    import pickle

    from bitsr import _core
    from bitsr.flow import crop_rect

    pics = list(bitsr.extract(make_hevc("pick", frames=4, source="bikes")))
    a = {k: pickle.loads(pickle.dumps(np.array(v))) for k, v in pics[1].arrays.items()}
    nb = [(pics[0].arrays, pics[0].poc, None)]
    got = _core.raster_flow(a, pics[1].poc, pics[0].poc, nb, crop_rect(pics[1]), 1, "nearest")
    ref = _core.raster_flow(pics[1].arrays, pics[1].poc, pics[0].poc, nb, crop_rect(pics[1]), 1, "nearest")
    assert all(np.array_equal(x, y) for x, y in zip(got, ref))
