// Motion vector derivation (8.5.3.2): merge candidates (spatial, temporal, combined
// bi-predictive, zero), AMVP with spatial scaling, TMVP from the collocated picture's
// motion field (read at 16x16 granularity), and prediction-block availability (6.4.2).
#include <algorithm>
#include <climits>
#include <cstdlib>

#include "common/error.h"
#include "hevc/slice_decoder.h"

namespace bitsr {

namespace {
enum { PART_2Nx2N = 0, PART_2NxN, PART_Nx2N, PART_NxN, PART_2NxnU, PART_2NxnD, PART_nLx2N, PART_nRx2N };

inline int clip3(int lo, int hi, int v) { return v < lo ? lo : v > hi ? hi : v; }

// POC-distance scaling of 8.5.3.2.7 / 8.5.3.2.8.
inline Mv scale_mv(Mv mv, int td_raw, int tb_raw) {
  const int td = clip3(-128, 127, td_raw);
  const int tb = clip3(-128, 127, tb_raw);
  if (td == 0) return mv;  // only possible for broken streams; keep the vector
  const int tx = (16384 + (std::abs(td) >> 1)) / td;
  const int dsf = clip3(-4096, 4095, (tb * tx + 32) >> 6);
  auto s = [&](int v) {
    const int64_t p = (int64_t)dsf * v;
    const int64_t a = (std::llabs(p) + 127) >> 8;
    return clip3(-32768, 32767, (int)(p < 0 ? -a : a));
  };
  return {s(mv.x), s(mv.y)};
}

struct Cand {
  Mv mv[2];
  int ref_idx[2];
  int pf[2];
};

inline bool same_motion(const Cand& a, const Cand& b) {
  for (int l = 0; l < 2; ++l) {
    if (a.pf[l] != b.pf[l]) return false;
    if (a.pf[l] && (a.ref_idx[l] != b.ref_idx[l] || a.mv[l].x != b.mv[l].x || a.mv[l].y != b.mv[l].y)) return false;
  }
  return true;
}

}  // namespace

bool SliceDecoder::available_pb(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, int xNb,
                                int yNb) const {
  const bool same_cb = xCb <= xNb && yCb <= yNb && xCb + nCbS > xNb && yCb + nCbS > yNb;
  bool avail;
  if (!same_cb)
    avail = available_zs(xPb, yPb, xNb, yNb);
  else if ((w << 1) == nCbS && (h << 1) == nCbS && part_idx == 1 && yCb + h <= yNb && xCb + w > xNb)
    avail = false;
  else
    avail = true;
  if (avail && rec(xNb, yNb).pred_mode == PM_INTRA) avail = false;
  return avail;
}

void SliceDecoder::store_motion(PuRec& r, const PuMotion& m) {
  const RefList* L = in_.lists;
  r.inter_dir = (uint8_t)(m.pred_flag[0] | (m.pred_flag[1] << 1));
  for (int l = 0; l < 2; ++l) {
    if (m.pred_flag[l]) {
      if (m.ref_idx[l] < 0 || m.ref_idx[l] >= L[l].n) fail("ref_idx", "reference index outside the reference list");
      r.mv[l * 2] = (int16_t)m.mv[l].x;
      r.mv[l * 2 + 1] = (int16_t)m.mv[l].y;
      r.ref_idx[l] = (int8_t)m.ref_idx[l];
      r.ref_lt |= (uint8_t)(L[l].is_lt[m.ref_idx[l]] << l);
    } else {
      r.mv[l * 2] = r.mv[l * 2 + 1] = 0;
      r.ref_idx[l] = -1;
    }
  }
}

void SliceDecoder::derive_pending(const PendingRange& range, int& failed_ctb) {
  const int W = sps_.PicWidthInCtbsY;
  slice_addr_rs_ = range.slice_addr_rs;
  ctb_addr_rs_ = -1;
  watch_col();
  for (size_t i = range.begin; i < range.end; ++i) {
    const PendingPu& p = st_.pending[i];
    if (p.ctb_rs != ctb_addr_rs_) {
      before_ctb_motion(p.ctb_rs);
      ctb_addr_rs_ = p.ctb_rs;
      x_ctb_ = (p.ctb_rs % W) << log2_ctb_;
      y_ctb_ = (p.ctb_rs / W) << log2_ctb_;
    }
    if (!pic_.ctb_ok[p.ctb_rs]) continue;  // concealed: its records are replaced
    failed_ctb = p.ctb_rs;
    part_mode_ = p.part_mode;
    PuMotion m;
    derive_motion(p, m);
    store_motion(pr_.recs[p.rec], m);
  }
  failed_ctb = -1;
}

void SliceDecoder::watch_col() {
  col_progress_ = sh_.slice_temporal_mvp_enabled_flag && in_.col_pic ? &in_.col_pic->motion : nullptr;
  col_final_ = col_progress_ ? col_progress_->get() : INT_MAX;
}

void SliceDecoder::col_wait(int need) {
  if (!derive_now_) {  // a derivation pass: the collocated picture's is under way
    col_final_ = col_progress_->wait(need);
    return;
  }
  // Parsing: wait only for a collocated picture that is being derived now, and, while other
  // work waits for a thread, not long in all (a cheaper picture would otherwise go at the
  // pace of a costlier one); then the rest of this picture is derived later (PendingRange)
  // and the thread goes on parsing.
  constexpr int kBudgetUs = 50, kSliceUs = 20;
  for (;;) {
    col_final_ = col_progress_->get();
    if (col_final_ >= need) return;
    if (!col_progress_->live() || (st_.waited_us >= kBudgetUs && in_.helpers && in_.helpers->has_work())) break;
    col_progress_->wait_live(need, kSliceUs, st_.waited_us);
  }
  derive_now_->derive_failed = true;
  pic_.motion.set_state(MotionProgress::kIdle);
}

void SliceDecoder::publish_motion(int ctb_rs) {
  // Every CTB before ctb_rs in decoding order (raster: no tiles) has its final motion, but
  // those to be concealed (not ctb_ok) get new records at the end of the picture. Published
  // by whole CTB rows: a notification per CTB would cost more than the finer lag saves.
  int& n = st_.published;
  const int start = n;
  while (n < ctb_rs && pic_.ctb_ok[(size_t)n]) ++n;
  if (n / pic_w_ctb_ != start / pic_w_ctb_) pic_.motion.publish(n);
}

void SliceDecoder::derive_motion(const PendingPu& p, PuMotion& m) {
  if (p.merge) {
    derive_merge(p.x_cb, p.y_cb, p.n_cb, p.x_pb, p.y_pb, p.w, p.h, p.part_idx, p.merge_idx, m);
    return;
  }
  const int ref_idx[2] = {p.ref_idx[0], p.ref_idx[1]}, mvp[2] = {p.mvp[0], p.mvp[1]};
  const Mv mvd[2] = {{p.mvd[0], p.mvd[1]}, {p.mvd[2], p.mvd[3]}};
  amvp_motion(p.x_cb, p.y_cb, p.n_cb, p.x_pb, p.y_pb, p.w, p.h, p.part_idx, ref_idx, mvp, mvd, m);
}

void SliceDecoder::amvp_motion(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx,
                               const int ref_idx[2], const int mvp[2], const Mv mvd[2], PuMotion& m) {
  for (int X = 0; X < 2; ++X) {
    m.pred_flag[X] = ref_idx[X] >= 0;
    m.ref_idx[X] = ref_idx[X];
    m.mv[X] = {0, 0};
    if (!m.pred_flag[X]) continue;
    Mv q = derive_amvp(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, X, ref_idx[X], mvp[X]);
    // 8-272..8-275: the sum wraps to 16 bits
    uint32_t ux = (uint32_t)(q.x + mvd[X].x + 65536) & 0xffff;
    uint32_t uy = (uint32_t)(q.y + mvd[X].y + 65536) & 0xffff;
    m.mv[X].x = ux >= 32768 ? (int32_t)ux - 65536 : (int32_t)ux;
    m.mv[X].y = uy >= 32768 ? (int32_t)uy - 65536 : (int32_t)uy;
  }
}

bool SliceDecoder::col_mv(int xCol, int yCol, int X, int ref_idx, Mv& out) {
  const Picture* col = in_.col_pic;
  const Priors& cp = col->pr;
  xCol = (xCol >> 4) << 4;
  yCol = (yCol >> 4) << 4;
  const PuRec& cr = cp.at_col((size_t)(yCol >> 2) * cp.gw + (xCol >> 2));
  if (cr.pred_mode == PM_INTRA) return false;
  const int dir = cr.inter_dir;
  if (dir == 0) return false;
  int list_col;
  if (!(dir & 1)) {
    list_col = 1;
  } else if (dir == 1) {
    list_col = 0;
  } else {
    // NoBackwardPredFlag: every reference of the current slice precedes (or is) the current picture
    bool no_backward = true;
    for (int l = 0; l < 2 && no_backward; ++l)
      for (int i = 0; i < in_.lists[l].n; ++i)
        if (in_.lists[l].poc[i] > pic_.poc) {
          no_backward = false;
          break;
        }
    list_col = no_backward ? X : (sh_.collocated_from_l0_flag ? 1 : 0);
  }
  const Mv mv_col = {cr.mv[list_col * 2], cr.mv[list_col * 2 + 1]};
  const bool col_lt = (cr.ref_lt >> list_col) & 1;
  if (cr.slice_idx >= col->slices.size()) return false;
  const int32_t col_ref_poc = col->slices[cr.slice_idx].ref_poc[list_col][cr.ref_idx[list_col]];
  const bool cur_lt = in_.lists[X].is_lt[ref_idx];
  if (col_lt != cur_lt) return false;
  const int col_poc_diff = col->poc - col_ref_poc;
  const int cur_poc_diff = pic_.poc - in_.lists[X].poc[ref_idx];
  if (cur_lt || col_poc_diff == cur_poc_diff)
    out = mv_col;
  else
    out = scale_mv(mv_col, col_poc_diff, cur_poc_diff);
  return true;
}

bool SliceDecoder::temporal_mv(int xPb, int yPb, int w, int h, int X, int ref_idx, Mv& out) {
  if (!sh_.slice_temporal_mvp_enabled_flag || !in_.col_pic) return false;
  const int xBr = xPb + w, yBr = yPb + h;
  if ((yPb >> log2_ctb_) == (yBr >> log2_ctb_) && yBr < sps_.height && xBr < sps_.width) {
    if (col_mv(xBr, yBr, X, ref_idx, out)) return true;
  }
  return col_mv(xPb + (w >> 1), yPb + (h >> 1), X, ref_idx, out);
}

void SliceDecoder::derive_merge(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, int merge_idx,
                                PuMotion& out) {
  const int orig_w = w, orig_h = h;
  const int pml = pps_.log2_parallel_merge_level;
  if (pml > 2 && nCbS == 8) {  // singleMCLFlag: all PUs of an 8x8 CU share the 2Nx2N list
    xPb = xCb;
    yPb = yCb;
    w = h = nCbS;
    part_idx = 0;
  }
  const int max_cand = sh_.max_num_merge_cand;
  Cand list[5];
  int n = 0;
  auto read = [&](int x, int y) {
    Cand c;
    const PuRec& r = rec(x, y);
    for (int l = 0; l < 2; ++l) {
      c.pf[l] = (r.inter_dir >> l) & 1;
      c.ref_idx[l] = r.ref_idx[l];
      c.mv[l] = {r.mv[l * 2], r.mv[l * 2 + 1]};
    }
    return c;
  };
  auto same_mer = [&](int xN, int yN) { return (xPb >> pml) == (xN >> pml) && (yPb >> pml) == (yN >> pml); };
  // The list is built in order and later candidates never change earlier ones, so
  // construction stops as soon as the entry merge_idx selects exists.
  do {
    // A1
    const int xA1 = xPb - 1, yA1 = yPb + h - 1;
    const bool avA1 =
        !same_mer(xA1, yA1) &&
        !((part_mode_ == PART_Nx2N || part_mode_ == PART_nLx2N || part_mode_ == PART_nRx2N) && part_idx == 1) &&
        available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xA1, yA1);
    Cand A1, B1;
    if (avA1) {
      A1 = read(xA1, yA1);
      list[n++] = A1;
      if (n > merge_idx) break;
    }
    // B1 (availableB1 before pruning is what B0 and B2 compare against)
    const int xB1 = xPb + w - 1, yB1 = yPb - 1;
    const bool b1_exists =
        !same_mer(xB1, yB1) &&
        !((part_mode_ == PART_2NxN || part_mode_ == PART_2NxnU || part_mode_ == PART_2NxnD) && part_idx == 1) &&
        available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xB1, yB1);
    bool avB1 = b1_exists;
    if (b1_exists) {
      B1 = read(xB1, yB1);
      if (avA1 && same_motion(A1, B1)) {
        avB1 = false;
      } else {
        list[n++] = B1;
        if (n > merge_idx) break;
      }
    }
    // B0
    const int xB0 = xPb + w, yB0 = yPb - 1;
    bool avB0 = !same_mer(xB0, yB0) && available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xB0, yB0);
    if (avB0) {
      const Cand B0 = read(xB0, yB0);
      if (b1_exists && same_motion(B1, B0)) {
        avB0 = false;
      } else {
        list[n++] = B0;
        if (n > merge_idx) break;
      }
    }
    // A0
    const int xA0 = xPb - 1, yA0 = yPb + h;
    bool avA0 = !same_mer(xA0, yA0) && available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xA0, yA0);
    if (avA0) {
      const Cand A0 = read(xA0, yA0);
      if (avA1 && same_motion(A1, A0)) {
        avA0 = false;
      } else {
        list[n++] = A0;
        if (n > merge_idx) break;
      }
    }
    // B2, only when fewer than four spatial candidates were found
    if (!(avA0 && avA1 && avB0 && avB1)) {
      const int xB2 = xPb - 1, yB2 = yPb - 1;
      if (!same_mer(xB2, yB2) && available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xB2, yB2)) {
        const Cand B2 = read(xB2, yB2);
        if (!((avA1 && same_motion(A1, B2)) || (b1_exists && same_motion(B1, B2)))) {
          list[n++] = B2;
          if (n > merge_idx) break;
        }
      }
    }
    if (n > max_cand) n = max_cand;
    // temporal
    if (n < max_cand && sh_.slice_temporal_mvp_enabled_flag) {
      Cand col;
      col.pf[0] = temporal_mv(xPb, yPb, w, h, 0, 0, col.mv[0]);
      col.ref_idx[0] = col.pf[0] ? 0 : -1;
      col.pf[1] = 0;
      col.ref_idx[1] = -1;
      col.mv[1] = {0, 0};
      if (sh_.slice_type == SLICE_B) {
        col.pf[1] = temporal_mv(xPb, yPb, w, h, 1, 0, col.mv[1]);
        col.ref_idx[1] = col.pf[1] ? 0 : -1;
      }
      if (!col.pf[0]) col.mv[0] = {0, 0};
      if (col.pf[0] || col.pf[1]) {
        list[n++] = col;
        if (n > merge_idx) break;
      }
    }
    // combined bi-predictive
    if (sh_.slice_type == SLICE_B && n > 1 && n < max_cand) {
      static const int kComb[12][2] = {{0, 1}, {1, 0}, {0, 2}, {2, 0}, {1, 2}, {2, 1},
                                       {0, 3}, {3, 0}, {1, 3}, {3, 1}, {2, 3}, {3, 2}};
      const int orig = n;
      for (int ci = 0; ci < orig * (orig - 1) && n < max_cand && n <= merge_idx; ++ci) {
        const Cand& l0 = list[kComb[ci][0]];
        const Cand& l1 = list[kComb[ci][1]];
        if (l0.pf[0] && l1.pf[1] &&
            (in_.lists[0].poc[l0.ref_idx[0]] != in_.lists[1].poc[l1.ref_idx[1]] || l0.mv[0].x != l1.mv[1].x ||
             l0.mv[0].y != l1.mv[1].y)) {
          Cand c;
          c.pf[0] = c.pf[1] = 1;
          c.ref_idx[0] = l0.ref_idx[0];
          c.ref_idx[1] = l1.ref_idx[1];
          c.mv[0] = l0.mv[0];
          c.mv[1] = l1.mv[1];
          list[n++] = c;
        }
      }
      if (n > merge_idx) break;
    }
    // zero candidates
    const int num_ref = sh_.slice_type == SLICE_P ? sh_.num_ref_idx_active[0]
                                                  : std::min(sh_.num_ref_idx_active[0], sh_.num_ref_idx_active[1]);
    for (int zi = 0; n < max_cand && n <= merge_idx; ++zi) {
      Cand c;
      const int r = zi < num_ref ? zi : 0;
      c.pf[0] = 1;
      c.ref_idx[0] = r;
      c.mv[0] = {0, 0};
      c.mv[1] = {0, 0};
      c.pf[1] = sh_.slice_type == SLICE_P ? 0 : 1;
      c.ref_idx[1] = c.pf[1] ? r : -1;
      list[n++] = c;
    }
  } while (false);
  if (merge_idx >= n) fail("merge_idx", "merge_idx beyond the merge candidate list");
  const Cand& s = list[merge_idx];
  for (int l = 0; l < 2; ++l) {
    out.pred_flag[l] = s.pf[l];
    out.ref_idx[l] = s.pf[l] ? s.ref_idx[l] : -1;
    out.mv[l] = s.pf[l] ? s.mv[l] : Mv{0, 0};
  }
  if (out.pred_flag[0] && out.pred_flag[1] && orig_w + orig_h == 12) {  // 8x4/4x8: bi to uni
    out.pred_flag[1] = 0;
    out.ref_idx[1] = -1;
    out.mv[1] = {0, 0};
  }
}

Mv SliceDecoder::derive_amvp(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, int X,
                             int ref_idx, int mvp_flag) {
  const int Y = 1 - X;
  const RefList* L = in_.lists;
  const int32_t target_poc = L[X].poc[ref_idx];
  const bool target_lt = L[X].is_lt[ref_idx];
  // Neighbours passing available_pb are in the current slice, so their reference indices
  // index this slice's lists.
  auto nb_pf = [&](const PuRec& r, int l) { return (r.inter_dir >> l) & 1; };
  auto nb_mv = [&](const PuRec& r, int l) { return Mv{r.mv[l * 2], r.mv[l * 2 + 1]}; };
  auto nb_poc = [&](const PuRec& r, int l) { return L[l].poc[r.ref_idx[l]]; };
  // A
  const int xA[2] = {xPb - 1, xPb - 1}, yA[2] = {yPb + h, yPb + h - 1};
  bool avA[2];
  for (int i = 0; i < 2; ++i) avA[i] = available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xA[i], yA[i]);
  const bool is_scaled = avA[0] || avA[1];
  bool have_a = false;
  Mv mvA{0, 0};
  for (int i = 0; i < 2 && !have_a; ++i) {
    if (!avA[i]) continue;
    const PuRec& k = rec(xA[i], yA[i]);
    if (nb_pf(k, X) && nb_poc(k, X) == target_poc) {
      have_a = true;
      mvA = nb_mv(k, X);
    } else if (nb_pf(k, Y) && nb_poc(k, Y) == target_poc) {
      have_a = true;
      mvA = nb_mv(k, Y);
    }
  }
  for (int i = 0; i < 2 && !have_a; ++i) {
    if (!avA[i]) continue;
    const PuRec& k = rec(xA[i], yA[i]);
    int l = -1;
    if (nb_pf(k, X) && (((k.ref_lt >> X) & 1) == target_lt))
      l = X;
    else if (nb_pf(k, Y) && (((k.ref_lt >> Y) & 1) == target_lt))
      l = Y;
    if (l < 0) continue;
    have_a = true;
    mvA = nb_mv(k, l);
    const bool nb_lt = (k.ref_lt >> l) & 1;
    if (!nb_lt && !target_lt) mvA = scale_mv(mvA, pic_.poc - nb_poc(k, l), pic_.poc - target_poc);
  }
  // B
  const int xB[3] = {xPb + w, xPb + w - 1, xPb - 1}, yB[3] = {yPb - 1, yPb - 1, yPb - 1};
  bool avB[3];
  for (int i = 0; i < 3; ++i) avB[i] = available_pb(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, xB[i], yB[i]);
  bool have_b = false;
  Mv mvB{0, 0};
  for (int i = 0; i < 3 && !have_b; ++i) {
    if (!avB[i]) continue;
    const PuRec& k = rec(xB[i], yB[i]);
    if (nb_pf(k, X) && nb_poc(k, X) == target_poc) {
      have_b = true;
      mvB = nb_mv(k, X);
    } else if (nb_pf(k, Y) && nb_poc(k, Y) == target_poc) {
      have_b = true;
      mvB = nb_mv(k, Y);
    }
  }
  if (!is_scaled && have_b) {
    have_a = true;
    mvA = mvB;
  }
  if (!is_scaled) {
    have_b = false;
    for (int i = 0; i < 3 && !have_b; ++i) {
      if (!avB[i]) continue;
      const PuRec& k = rec(xB[i], yB[i]);
      int l = -1;
      if (nb_pf(k, X) && (((k.ref_lt >> X) & 1) == target_lt))
        l = X;
      else if (nb_pf(k, Y) && (((k.ref_lt >> Y) & 1) == target_lt))
        l = Y;
      if (l < 0) continue;
      have_b = true;
      mvB = nb_mv(k, l);
      const bool nb_lt = (k.ref_lt >> l) & 1;
      if (!nb_lt && !target_lt) mvB = scale_mv(mvB, pic_.poc - nb_poc(k, l), pic_.poc - target_poc);
    }
  }
  Mv cand[3];
  int n = 0;
  if (have_a) cand[n++] = mvA;
  if (have_b && !(have_a && mvA.x == mvB.x && mvA.y == mvB.y)) cand[n++] = mvB;
  if (n < 2) {
    Mv col;
    if (temporal_mv(xPb, yPb, w, h, X, ref_idx, col)) cand[n++] = col;
  }
  while (n < 2) cand[n++] = {0, 0};
  return cand[mvp_flag];
}

}  // namespace bitsr
