#include "raster/flow.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <utility>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif


namespace bitsr::raster {
namespace {

// Weighted sums of the candidates splatted onto one block.
struct Acc {
  float w = 0, u = 0, v = 0, uv2 = 0, q = 0;  // sum w, w*u, w*v, w*(u^2+v^2), w*quality
  void add(float wt, float du, float dv, float qual) {
    w += wt;
    u += wt * du;
    v += wt * dv;
    uv2 += wt * (du * du + dv * dv);
    q += wt * qual;
  }
};

// Reliability of a displacement P -> T read from a motion segment measured between POCs
// m and r, under constant velocity: exact when the segment joins P and T, good when P..T
// lies inside it (interpolation), falling with the share of P..T outside it.
float segment_quality(int32_t P, int32_t T, int32_t m, int32_t r) {
  if ((m == P && r == T) || (m == T && r == P)) return 1.f;
  const int64_t lo = std::min(m, r), hi = std::max(m, r);
  const int64_t nlo = std::min(P, T), nhi = std::max(P, T);
  const int64_t outside = std::max<int64_t>(0, lo - nlo) + std::max<int64_t>(0, nhi - hi);
  return 0.7f / (1.f + (float)outside / (float)(hi - lo));
}

// A block predicted without residual matched its reference well: its vector is more
// trustworthy than one the encoder had to correct.
inline float block_factor(int8_t pred_mode, uint8_t residual) {
  if (pred_mode == 2) return 1.f;
  return residual ? 0.85f : 0.95f;
}

struct Cand {
  float u, v, q;
};

// Splats the motion segments of one neighbour that cross the target's POC: with `exact`,
// only those joining T and P (T's vectors pointing at P), else all the others.
// The neighbour is sampled every `step` blocks and accumulated on a grid of cells of
// step x step blocks (aw x ah cells): a sample moves as one cell. Cells with need[c] == 0
// receive nothing (null: all cells). Samples of a row with the same motion (a PU, or
// several) move as one run: the run lands on cells fx..fx+len with the fractional overlap
// only at its ends, so it costs one accumulation per covered cell and row instead of four
// per sample.
bool splat_neighbour(const PriorsView& m, int32_t P, int32_t T, bool exact, int step, const uint8_t* need, Acc* acc,
                     int aw, int ah) {
  bool hit = false;
  const int32_t M = m.poc;
  // (M, r] must contain P, and exactness must match
  auto usable = [&](int32_t r) {
    if (r == kNoRef || r == M) return false;
    if (!((M < P && P <= r) || (r <= P && P < M))) return false;
    return exact == (M == T && r == P);
  };
  if (m.num_refs >= 0) {  // the reference lists are known: skip pictures with nothing to give
    bool any = false;
    for (int i = 0; i < m.num_refs && !any; ++i) any = usable(m.refs[i]);
    if (!any) return false;
  }
  const float istep = 1.f / (float)step;
  const int8_t* __restrict pmode = m.pred_mode;
  const uint8_t* __restrict idir = m.inter_dir;
  const uint8_t* __restrict resid = m.residual;
  const int32_t* __restrict rpoc = m.ref_poc;
  const int16_t* __restrict mvs = m.mv;
  for (int l = 0; l < 2; ++l) {
    int32_t last_r = kNoRef, tested_r = kNoRef;
    bool tested_ok = false;
    float inv = 0.f, qseg = 0.f;
    for (int by = 0; by < m.gh; by += step) {
      const size_t row = (size_t)by * m.gw;
      int bx = 0;
      while (bx < m.gw) {
        const size_t b = row + bx;
        if (!(idir[b] >> l & 1) || pmode[b] == 1) {
          bx += step;
          continue;
        }
        const int32_t r = rpoc[2 * b + l];
        if (r != tested_r) {
          tested_r = r;
          tested_ok = usable(r);
        }
        if (!tested_ok) {
          bx += step;
          continue;
        }
        uint32_t mvb;  // the list's (x, y) vector as one word
        std::memcpy(&mvb, mvs + 4 * b + 2 * l, 4);
        const int8_t pm = pmode[b];
        const uint8_t res = resid[b];
        int end = bx + step;
        while (end < m.gw) {
          const size_t e = row + end;
          uint32_t mve;
          std::memcpy(&mve, mvs + 4 * e + 2 * l, 4);
          if (mve != mvb || rpoc[2 * e + l] != r || !(idir[e] >> l & 1) || pmode[e] != pm || resid[e] != res) break;
          end += step;
        }
        const int len = (std::min(end, m.gw) - bx + step - 1) / step;  // in cells
        if (r != last_r) {
          last_r = r;
          inv = 1.f / (4.f * (float)((int64_t)r - M));  // quarter-pel per segment -> px per POC
          qseg = 0.8f * segment_quality(P, T, M, r);
        }
        const float vx = mvs[4 * b + 2 * l] * inv, vy = mvs[4 * b + 2 * l + 1] * inv;
        // where the run starts at time P, in cell units
        const float gx = ((float)bx + vx * (float)((int64_t)P - M) * 0.25f) * istep;
        const float gy = ((float)by + vy * (float)((int64_t)P - M) * 0.25f) * istep;
        const float fx = std::floor(gx), fy = std::floor(gy);
        bx = end;
        if (fx + (float)len < 0.f || fy + 1.f < 0.f || fx >= (float)aw || fy >= (float)ah) continue;
        const int ix = (int)fx, iy = (int)fy;
        const float ax = gx - fx, ay = gy - fy;
        const float du = vx * (float)((int64_t)T - P), dv = vy * (float)((int64_t)T - P);
        const float q = qseg * block_factor(pm, res);
        hit = true;
        for (int k = 0; k < 2; ++k) {
          const int y = iy + k;
          const float wy = k == 0 ? 1.f - ay : ay;
          if (y < 0 || y >= ah || wy <= 0.f) continue;
          const size_t base = (size_t)y * aw;
          auto put = [&](int x, float w) {
            if (x < 0 || x >= aw || w <= 0.f || (need && !need[base + x])) return;
            acc[base + x].add(w, du, dv, q);
          };
          put(ix, (1.f - ax) * wy);
          const int x0 = std::max(ix + 1, 0), x1 = std::min(ix + len, aw);
          for (int x = x0; x < x1; ++x)
            if (!need || need[base + x]) acc[base + x].add(wy, du, dv, q);
          put(ix + len, ax * wy);
        }
      }
    }
  }
  return hit;
}

// Agreement scale: vectors closer than about 1 px (+10% of their length) agree.
inline float inv_tolerance2(float u, float v) { return 1.f / (1.f + 0.02f * (u * u + v * v)); }

bool splat_candidate(const Acc& a, Cand& c) {
  if (a.w < 0.05f) return false;
  const float iw = 1.f / a.w;
  c.u = a.u * iw;
  c.v = a.v * iw;
  // spread of the trajectories landing here (occlusions, divergent motion) lowers trust
  const float var = std::max(0.f, a.uv2 * iw - (c.u * c.u + c.v * c.v));
  c.q = a.q * iw * std::min(1.f, a.w) / (1.f + var * inv_tolerance2(c.u, c.v));
  return true;
}

// Robust fusion around the most reliable candidate: candidates that disagree with it get
// little weight, and the confidence rises with the others' agreement.
bool fuse(const Cand* c, int n, float& u, float& v, float& conf) {
  if (n == 0) return false;
  if (n == 1) {
    u = c[0].u;
    v = c[0].v;
    conf = std::min(1.f, c[0].q * 0.8f);
    return true;
  }
  int a = 0;
  for (int i = 1; i < n; ++i)
    if (c[i].q > c[a].q) a = i;
  const float inv_tol2 = inv_tolerance2(c[a].u, c[a].v);
  float sw = c[a].q, su = c[a].q * c[a].u, sv = c[a].q * c[a].v;
  float agree = 0, others = 0;
  for (int i = 0; i < n; ++i) {
    if (i == a) continue;
    const float du = c[i].u - c[a].u, dv = c[i].v - c[a].v;
    const float w = c[i].q / (1.f + (du * du + dv * dv) * inv_tol2);
    sw += w;
    su += w * c[i].u;
    sv += w * c[i].v;
    agree += w;
    others += c[i].q;
  }
  const float isw = 1.f / sw;
  u = su * isw;
  v = sv * isw;
  // others > 0: candidates have positive quality
  conf = std::min(1.f, c[a].q * (0.6f + 0.4f * agree / others));
  return true;
}

// Push-pull fill of the blocks without a candidate (conf < 0 marks them): averages of the
// known blocks over a pyramid, pulled back down to the holes. Confidence decays with the
// distance (pyramid level) the value came from.
void fill_holes(BlockFlow& f) {
  const size_t n = f.u.size();
  size_t holes = 0;
  for (size_t i = 0; i < n; ++i) holes += f.conf[i] < 0.f;
  if (!holes) return;
  if (holes == n) {
    std::fill(f.u.begin(), f.u.end(), 0.f);
    std::fill(f.v.begin(), f.v.end(), 0.f);
    std::fill(f.conf.begin(), f.conf.end(), 0.f);
    return;
  }
  struct Level {
    int w = 0, h = 0;
    std::vector<float> W, U, V;
    std::vector<uint8_t> hop;
  };
  thread_local std::vector<Level> levels;
  std::vector<Level>& lv = levels;  // lv[k] is level k+1; level 0 is the block flow (one TLS lookup)
  int top = 0;
  for (int w = f.gw, h = f.gh; w > 1 || h > 1; ++top) {
    const int pw = (w + 1) / 2, ph = (h + 1) / 2;
    if ((int)lv.size() <= top) lv.resize(top + 1);
    Level& p = lv[top];
    p.w = pw;
    p.h = ph;
    p.W.assign((size_t)pw * ph, 0.f);
    p.U.assign(p.W.size(), 0.f);
    p.V.assign(p.W.size(), 0.f);
    p.hop.assign(p.W.size(), 0);
    for (int y = 0; y < h; ++y) {
      float* W = p.W.data() + (size_t)(y / 2) * pw;
      float* U = p.U.data() + (size_t)(y / 2) * pw;
      float* V = p.V.data() + (size_t)(y / 2) * pw;
      if (top == 0) {
        // branch-free: holes are scattered, and a mispredicted branch per block costs more
        // than the arithmetic
        const size_t row = (size_t)y * w;
        const float* __restrict cf = f.conf.data() + row;
        const float* __restrict fu = f.u.data() + row;
        const float* __restrict fv = f.v.data() + row;
        const int pairs = w / 2;
        for (int x = 0; x < pairs; ++x) {
          const float m0 = cf[2 * x] >= 0.f ? 1.f : 0.f, m1 = cf[2 * x + 1] >= 0.f ? 1.f : 0.f;
          W[x] += m0 + m1;
          U[x] += m0 * fu[2 * x] + m1 * fu[2 * x + 1];
          V[x] += m0 * fv[2 * x] + m1 * fv[2 * x + 1];
        }
        if (w & 1) {
          const float m = cf[w - 1] >= 0.f ? 1.f : 0.f;
          W[pairs] += m;
          U[pairs] += m * fu[w - 1];
          V[pairs] += m * fv[w - 1];
        }
      } else {
        const Level& c = lv[top - 1];
        const size_t row = (size_t)y * w;
        for (int x = 0; x < w; ++x) {
          W[x / 2] += c.W[row + x];
          U[x / 2] += c.U[row + x];
          V[x / 2] += c.V[row + x];
        }
      }
    }
    w = pw;
    h = ph;
  }
  // pull: sums become averages where a level has data, else the parent's value
  for (int k = top - 1; k >= 0; --k) {
    Level& c = lv[k];
    const Level* p = k + 1 < top ? &lv[k + 1] : nullptr;
    for (int y = 0; y < c.h; ++y)
      for (int x = 0; x < c.w; ++x) {
        const size_t i = (size_t)y * c.w + x;
        if (c.W[i] > 0.f) {
          c.U[i] /= c.W[i];
          c.V[i] /= c.W[i];
          c.hop[i] = 0;
        } else if (p) {
          const size_t j = (size_t)(y / 2) * p->w + x / 2;
          c.U[i] = p->U[j];
          c.V[i] = p->V[j];
          c.hop[i] = (uint8_t)std::min(254, p->hop[j] + 1);
        }
      }
  }
  // confidence by pyramid distance, 0.3 * 0.7^hop (a table: pow per hole was the cost)
  static const std::vector<float> hop_conf = [] {
    std::vector<float> t(256);
    for (int h = 0; h < 256; ++h) t[h] = 0.3f * std::pow(0.7f, (float)h);
    return t;
  }();
  const Level& l1 = lv[0];
  for (int y = 0; y < f.gh; ++y)
    for (int x = 0; x < f.gw; ++x) {
      const size_t i = (size_t)y * f.gw + x;
      if (f.conf[i] >= 0.f) continue;
      const size_t j = (size_t)(y / 2) * l1.w + x / 2;
      f.u[i] = l1.U[j];
      f.v[i] = l1.V[j];
      f.conf[i] = hop_conf[l1.hop[j]];
    }
}

// Copies a finished row into the output with non-temporal stores: a dense flow is larger
// than the caches and is read later by someone else, so writing around the cache saves
// fetching every output line before overwriting it.
inline void stream_row(float* dst, const float* src, int n) {
#if defined(__SSE2__)
  int i = 0;
  for (; i < n && (reinterpret_cast<uintptr_t>(dst + i) & 15); ++i) dst[i] = src[i];
  for (; i + 4 <= n; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  for (; i < n; ++i) dst[i] = src[i];
#else
  std::memcpy(dst, src, (size_t)n * sizeof(float));
#endif
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace

void estimate_block_flow(const PriorsView& t, const PriorsView* nb, int num_nb, int32_t T, const FlowOptions& opts,
                         BlockFlow& out) {
  const int gw = t.gw, gh = t.gh;
  const size_t n = t.size();
  const int32_t P = t.poc;
  out.gw = gw;
  out.gh = gh;
  if (T == P) {
    out.u.assign(n, 0.f);
    out.v.assign(n, 0.f);
    out.conf.assign(n, 1.f);
    return;
  }
  // every block is written by the first pass below
  out.u.resize(n);
  out.v.resize(n);
  out.conf.resize(n);
  std::vector<const PriorsView*> usable;
  if (opts.project)
    for (int i = 0; i < num_nb; ++i)
      if (nb[i].poc != P && nb[i].gw == gw && nb[i].gh == gh) usable.push_back(&nb[i]);

  // Own candidates; the scaling factor and quality depend only on the reference POC, and
  // neighbouring blocks mostly share it: cache the last one per list.
  int32_t last_r[2] = {kNoRef, kNoRef};
  float last_s[2] = {0, 0}, last_q[2] = {0, 0};
  auto own = [&](size_t b, Cand* c) {
    int nc = 0;
    const int8_t pm = t.pred_mode[b];
    if (pm == 1) return 0;
    const int dir = t.inter_dir[b];
    const float bf = block_factor(pm, t.residual[b]);
    for (int l = 0; l < 2; ++l) {
      if (!(dir >> l & 1)) continue;
      const int32_t r = t.ref_poc[2 * b + l];
      if (r == kNoRef || r == P) continue;
      if (r != last_r[l]) {
        last_r[l] = r;
        last_s[l] = (float)((int64_t)T - P) / (4.f * (float)((int64_t)r - P));
        last_q[l] = segment_quality(P, T, P, r);
      }
      c[nc++] = {t.mv[4 * b + 2 * l] * last_s[l], t.mv[4 * b + 2 * l + 1] * last_s[l], last_q[l] * bf};
    }
    return nc;
  };

  // Pass 1: own vectors. Blocks of a row with identical motion (mostly one PU) share their
  // candidates: one evaluation per run, kept for the passes below.
  struct Run {
    Cand c[2];
    int nc;
    float best;
  };
  struct Scratch {
    std::vector<Run> runs;
    std::vector<uint32_t> run_of;
    std::vector<Acc> exact, other;
    std::vector<Cand> exact_cand, other_cand;
    std::vector<uint8_t> need, need_cell;
  };
  thread_local Scratch scratch;
  // plain references: every use of a thread_local in a shared object calls __tls_get_addr
  Scratch& S = scratch;
  auto& runs = S.runs;
  auto& run_of = S.run_of;
  auto& exact = S.exact;
  auto& other = S.other;
  auto& exact_cand = S.exact_cand;
  auto& other_cand = S.other_cand;
  auto& need = S.need;
  auto& need_cell = S.need_cell;
  runs.clear();
  run_of.resize(n);
  need.assign(n, 0);
  auto same_motion = [&](size_t a, size_t b) {
    uint64_t ma, mb, ra, rb;
    std::memcpy(&ma, t.mv + 4 * a, 8);
    std::memcpy(&mb, t.mv + 4 * b, 8);
    std::memcpy(&ra, t.ref_poc + 2 * a, 8);
    std::memcpy(&rb, t.ref_poc + 2 * b, 8);
    return ma == mb && ra == rb && t.pred_mode[a] == t.pred_mode[b] && t.inter_dir[a] == t.inter_dir[b] &&
           t.residual[a] == t.residual[b];
  };
  size_t num_need = 0;
  // raw pointers: byte stores (need) would otherwise make the compiler reload every
  // vector's data pointer in the inner loops
  float* __restrict ou = out.u.data();
  float* __restrict ov = out.v.data();
  float* __restrict oc = out.conf.data();
  uint8_t* __restrict nd_of = need.data();
  uint32_t* __restrict id_of = run_of.data();
  for (int by = 0; by < gh; ++by) {
    const size_t row = (size_t)by * gw;
    int bx = 0;
    while (bx < gw) {
      const size_t b = row + bx;
      int end = bx + 1;
      while (end < gw && same_motion(b, row + end)) ++end;
      Run r;
      r.nc = own(b, r.c);
      r.best = 0.f;
      for (int i = 0; i < r.nc; ++i) r.best = std::max(r.best, r.c[i].q);
      float u = 0.f, v = 0.f, cf = -1.f;
      fuse(r.c, r.nc, u, v, cf);
      // a block with a vector pointing at T itself needs nothing else
      const uint8_t nd = r.best < 0.8f;
      const uint32_t id = (uint32_t)runs.size();
      runs.push_back(r);
      for (size_t i = b; i < row + end; ++i) {
        ou[i] = u;
        ov[i] = v;
        oc[i] = cf;
        nd_of[i] = nd;
        id_of[i] = id;
      }
      num_need += nd * (size_t)(end - bx);
      bx = end;
    }
  }
  // Sparse gaps (a few intra blocks) are left to the fill: the projections scan whole
  // neighbour pictures.
  const size_t min_need = (size_t)(opts.min_need * (float)n);
  // Fuses a block's own candidates with up to two extra ones (q < 0: none); blocks that
  // gain nothing keep the values of pass 1.
  auto refuse = [&](size_t b, const Cand& e1, const Cand& e2, float& best) {
    const Run& r = runs[id_of[b]];
    best = r.best;
    if (e1.q < 0.f && e2.q < 0.f) return;
    Cand c[4];
    int nc = r.nc;
    for (int i = 0; i < nc; ++i) c[i] = r.c[i];
    if (e1.q >= 0.f) c[nc++] = e1;
    if (e2.q >= 0.f) c[nc++] = e2;
    best = std::max(best, std::max(e1.q, e2.q));
    float u, v, cf;
    fuse(c, nc, u, v, cf);
    ou[b] = u;
    ov[b] = v;
    oc[b] = cf;
  };
  const Cand none{0.f, 0.f, -1.f};

  // Marks the cells of st x st blocks holding a block that still needs candidates.
  auto cells_needing = [&](int st, int cw, int ch) {
    need_cell.assign((size_t)cw * ch, 0);
    for (int by = 0; by < gh; ++by) {
      const uint8_t* nr = nd_of + (size_t)by * gw;
      uint8_t* cr = need_cell.data() + (size_t)(by / st) * cw;
      for (int bx = 0; bx < gw; ++bx) cr[bx / st] |= nr[bx];
    }
    return need_cell.data();
  };
  // One candidate per accumulated cell (q < 0: none), for the cells that need one.
  // A splatted run gives the same sums to all the cells it covers fully: runs of equal
  // sums are evaluated once.
  auto cell_candidates = [&](const std::vector<Acc>& acc, const uint8_t* cneed, std::vector<Cand>& cand) {
    cand.resize(acc.size());
    const Acc* prev = nullptr;
    for (size_t c = 0; c < acc.size(); ++c) {
      if (!cneed[c]) {
        cand[c] = none;
        continue;
      }
      if (prev && std::memcmp(prev, &acc[c], sizeof(Acc)) == 0) {
        cand[c] = cand[prev - acc.data()];
        continue;
      }
      if (!splat_candidate(acc[c], cand[c])) cand[c] = none;
      prev = &acc[c];
    }
  };

  // The blocks not linked to T take the exact inverse of T's vectors pointing at P.
  bool have_exact = false;
  if (num_need >= std::max<size_t>(min_need, 1))
    for (const PriorsView* m : usable)
      if (m->poc == T) {
        exact.assign(n, Acc());
        have_exact = splat_neighbour(*m, P, T, true, 1, need.data(), exact.data(), gw, gh);
        if (have_exact) cell_candidates(exact, need.data(), exact_cand);
      }
  num_need = 0;
  for (int by = 0; by < gh; ++by) {
    const Cand* erow = have_exact ? exact_cand.data() + (size_t)by * gw : nullptr;
    // the previous block's inputs and result: along a row both mostly repeat
    const Cand* last_e = nullptr;
    uint32_t last_id = UINT32_MAX;
    float last_best = 0.f;
    size_t last_b = 0;
    for (int bx = 0; bx < gw; ++bx) {
      const size_t b = (size_t)by * gw + bx;
      if (!nd_of[b]) {
        last_e = nullptr;
        continue;
      }
      float best = runs[id_of[b]].best;
      if (erow) {
        const Cand* e = &erow[bx];
        if (last_e && id_of[b] == last_id && std::memcmp(e, last_e, sizeof(Cand)) == 0) {
          best = last_best;
          ou[b] = ou[last_b];
          ov[b] = ov[last_b];
          oc[b] = oc[last_b];
        } else {
          refuse(b, *e, none, best);
          last_e = e;
          last_id = id_of[b];
          last_best = best;
        }
        last_b = b;
      }
      if (best < opts.need_below)
        ++num_need;
      else
        nd_of[b] = 0;
    }
  }

  // Pass 2: blocks still without a good candidate take every other segment crossing P,
  // sampled and accumulated on cells of step x step blocks (approximate anyway: they are
  // extrapolated or interpolated in time, and whole pictures are scanned).
  if (num_need >= std::max<size_t>(min_need, 1) && !usable.empty() && !(have_exact && opts.others_as_fallback)) {
    const int st = opts.other_step > 0 ? opts.other_step : (n > (size_t)320 * 180 ? 4 : 2);
    const int cw = (gw + st - 1) / st, ch = (gh + st - 1) / st;
    const uint8_t* cneed = cells_needing(st, cw, ch);
    other.assign((size_t)cw * ch, Acc());
    bool any = false;
    for (const PriorsView* m : usable)
      any |= splat_neighbour(*m, P, T, false, st, cneed, other.data(), cw, ch);
    if (any) {
      cell_candidates(other, cneed, other_cand);
      for (int by = 0; by < gh; ++by) {
        const Cand* orow = other_cand.data() + (size_t)(by / st) * cw;
        const Cand* erow = have_exact ? exact_cand.data() + (size_t)by * gw : nullptr;
        for (int bx = 0; bx < gw; ++bx) {
          const size_t b = (size_t)by * gw + bx;
          if (!nd_of[b] || orow[bx / st].q < 0.f) continue;
          float best;
          refuse(b, erow ? erow[bx] : none, orow[bx / st], best);
        }
      }
    }
  }
  if (opts.fill) {
    fill_holes(out);
  } else {
    for (float& c : out.conf) c = std::max(c, 0.f);
  }
}

void rasterize_flow(const BlockFlow& bf, const Geometry& g, Interp interp, float* flow, float* conf) {
  const int ow = g.out_w(), oh = g.out_h();
  const size_t plane = (size_t)ow * oh;
  float* U = flow;
  float* V = flow + plane;
  const float scale = 1.f / (float)g.factor;
  // each output row is built in a small cache-resident buffer, then streamed out
  thread_local std::vector<float> rowbuf;
  rowbuf.resize((size_t)3 * ow);
  float* ru = rowbuf.data();
  float* rv = ru + ow;
  float* rc = rv + ow;
  auto emit = [&](int oy) {
    stream_row(U + (size_t)oy * ow, ru, ow);
    stream_row(V + (size_t)oy * ow, rv, ow);
    stream_row(conf + (size_t)oy * ow, rc, ow);
  };
  if (interp == Interp::Nearest) {
    const std::vector<int> cols = centre_blocks(g.left, ow, g.factor, bf.gw);
    const std::vector<int> rows = centre_blocks(g.top, oh, g.factor, bf.gh);
    // full resolution with a 4-aligned left edge: each block value covers 4 samples
    const bool broadcast = g.factor == 1 && (g.left & 3) == 0;
    for (int oy = 0; oy < oh; ++oy) {
      if (oy > 0 && rows[oy] == rows[oy - 1]) {  // same block row as the row above
        emit(oy);
        continue;
      }
      if (broadcast) {
        const size_t base = (size_t)rows[oy] * bf.gw + (g.left >> 2);
        const int full = ow >> 2;
        for (int b = 0; b < full; ++b) {
          const float bu = bf.u[base + b], bv = bf.v[base + b], bc = bf.conf[base + b];
          for (int j = 0; j < 4; ++j) {
            ru[4 * b + j] = bu;
            rv[4 * b + j] = bv;
            rc[4 * b + j] = bc;
          }
        }
        for (int ox = full * 4; ox < ow; ++ox) {
          ru[ox] = bf.u[base + full];
          rv[ox] = bf.v[base + full];
          rc[ox] = bf.conf[base + full];
        }
      } else {
        const size_t base = (size_t)rows[oy] * bf.gw;
        const float* bu = bf.u.data() + base;
        const float* bv = bf.v.data() + base;
        const float* bc = bf.conf.data() + base;
        for (int ox = 0; ox < ow; ++ox) {
          const int b = cols[ox];
          ru[ox] = bu[b] * scale;
          rv[ox] = bv[b] * scale;
          rc[ox] = bc[b];
        }
      }
      emit(oy);
    }
    stream_fence();
    return;
  }
  // Bilinear between block centres (4b + 2 in sample units), separable: block rows are
  // interpolated horizontally once, output rows blend two of them.
  struct Tap {
    int i0, i1;
    float w;
  };
  auto taps = [&](int first, int count, int grid) {
    std::vector<Tap> t(count);
    for (int o = 0; o < count; ++o) {
      const float gpos = ((float)first + (float)o * g.factor + 0.5f * g.factor - 2.f) * 0.25f;
      const float cl = std::min(std::max(gpos, 0.f), (float)(grid - 1));
      const int i0 = (int)cl;
      t[o] = {i0, std::min(i0 + 1, grid - 1), cl - (float)i0};
    }
    return t;
  };
  const std::vector<Tap> tx = taps(g.left, ow, bf.gw);
  const std::vector<Tap> ty = taps(g.top, oh, bf.gh);
  // rows i0 and i1 of the current output row; i0 never decreases down the picture
  std::vector<float> ra((size_t)3 * ow), rb((size_t)3 * ow);
  int ia = -1, ib = -1;
  auto hrow = [&](int j, float* r) {
    const size_t base = (size_t)j * bf.gw;
    for (int ox = 0; ox < ow; ++ox) {
      const Tap& t = tx[ox];
      const float w1 = t.w, w0 = 1.f - t.w;
      r[ox] = (bf.u[base + t.i0] * w0 + bf.u[base + t.i1] * w1) * scale;
      r[ow + ox] = (bf.v[base + t.i0] * w0 + bf.v[base + t.i1] * w1) * scale;
      r[2 * ow + ox] = bf.conf[base + t.i0] * w0 + bf.conf[base + t.i1] * w1;
    }
  };
  for (int oy = 0; oy < oh; ++oy) {
    const Tap& t = ty[oy];
    if (t.i0 != ia) {
      if (t.i0 == ib) {
        ra.swap(rb);
        std::swap(ia, ib);
      } else {
        hrow(t.i0, ra.data());
        ia = t.i0;
      }
    }
    if (t.i1 != ib) {
      if (t.i1 == ia) {
        rb = ra;
      } else {
        hrow(t.i1, rb.data());
      }
      ib = t.i1;
    }
    const float* r0 = ra.data();
    const float* r1 = rb.data();
    const float w1 = t.w, w0 = 1.f - t.w;
    for (int ox = 0; ox < ow; ++ox) {
      ru[ox] = r0[ox] * w0 + r1[ox] * w1;
      rv[ox] = r0[ow + ox] * w0 + r1[ow + ox] * w1;
      rc[ox] = r0[2 * ow + ox] * w0 + r1[2 * ow + ox] * w1;
    }
    emit(oy);
  }
  stream_fence();
}

}  // namespace bitsr::raster
