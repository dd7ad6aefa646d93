#include "raster/flow.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <utility>

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

// Splats the motion segments of one neighbour that cross the target's POC.
void splat_neighbour(const PriorsView& m, int32_t P, int32_t T, Acc* exact, Acc* other, int gw, int gh) {
  const int32_t M = m.poc;
  for (int by = 0; by < m.gh; ++by) {
    for (int bx = 0; bx < m.gw; ++bx) {
      const size_t b = (size_t)by * m.gw + bx;
      if (m.pred_mode[b] == 1) continue;
      const int dir = m.inter_dir[b];
      for (int l = 0; l < 2; ++l) {
        if (!(dir >> l & 1)) continue;
        const int32_t r = m.ref_poc[2 * b + l];
        if (r == kNoRef || r == M) continue;
        // P must lie on the segment (M, r]
        if (!((M < P && P <= r) || (r <= P && P < M))) continue;
        const float inv = 1.f / (4.f * (float)(r - M));  // quarter-pel per segment -> px per POC
        const float vx = m.mv[4 * b + 2 * l] * inv, vy = m.mv[4 * b + 2 * l + 1] * inv;
        const float du = vx * (float)(T - P), dv = vy * (float)(T - P);
        const float q = 0.8f * segment_quality(P, T, M, r) * block_factor(m.pred_mode[b], m.residual[b]);
        Acc* acc = (M == T && r == P) ? exact : other;
        // where the block sits at time P, in block units; area-weighted onto 4 blocks
        const float gx = ((float)(4 * bx) + vx * (float)(P - M)) * 0.25f;
        const float gy = ((float)(4 * by) + vy * (float)(P - M)) * 0.25f;
        const float fx = std::floor(gx), fy = std::floor(gy);
        const int ix = (int)fx, iy = (int)fy;
        const float ax = gx - fx, ay = gy - fy;
        const float wts[4] = {(1 - ax) * (1 - ay), ax * (1 - ay), (1 - ax) * ay, ax * ay};
        for (int k = 0; k < 4; ++k) {
          const int x = ix + (k & 1), y = iy + (k >> 1);
          if (x < 0 || y < 0 || x >= gw || y >= gh || wts[k] <= 0.f) continue;
          acc[(size_t)y * gw + x].add(wts[k], du, dv, q);
        }
      }
    }
  }
}

bool splat_candidate(const Acc& a, Cand& c) {
  if (a.w < 0.05f) return false;
  const float iw = 1.f / a.w;
  c.u = a.u * iw;
  c.v = a.v * iw;
  // spread of the trajectories landing here (occlusions, divergent motion) lowers trust
  const float var = std::max(0.f, a.uv2 * iw - (c.u * c.u + c.v * c.v));
  const float tol = 1.f + 0.1f * std::sqrt(c.u * c.u + c.v * c.v);
  c.q = a.q * iw * std::min(1.f, a.w) * std::exp(-var / (tol * tol));
  return true;
}

// Robust fusion around the most reliable candidate: candidates that disagree with it get
// little weight, and the confidence rises with the others' agreement.
bool fuse(const Cand* c, int n, float& u, float& v, float& conf) {
  if (n == 0) return false;
  int a = 0;
  for (int i = 1; i < n; ++i)
    if (c[i].q > c[a].q) a = i;
  const float tol = 1.f + 0.1f * std::sqrt(c[a].u * c[a].u + c[a].v * c[a].v);
  const float inv_tol2 = 1.f / (tol * tol);
  float sw = c[a].q, su = c[a].q * c[a].u, sv = c[a].q * c[a].v;
  float agree = 0, others = 0;
  for (int i = 0; i < n; ++i) {
    if (i == a) continue;
    const float du = c[i].u - c[a].u, dv = c[i].v - c[a].v;
    const float w = c[i].q * std::exp(-(du * du + dv * dv) * inv_tol2);
    sw += w;
    su += w * c[i].u;
    sv += w * c[i].v;
    agree += w;
    others += c[i].q;
  }
  u = su / sw;
  v = sv / sw;
  const float s = others > 0 ? agree / others : 0.5f;
  conf = std::min(1.f, c[a].q * (0.6f + 0.4f * s));
  return true;
}

// Push-pull fill of the blocks without a candidate (conf < 0 marks them): averages of the
// known blocks over a pyramid, pulled back down to the holes. Confidence decays with the
// distance (pyramid level) the value came from.
void fill_holes(BlockFlow& f) {
  struct Level {
    int w, h;
    std::vector<float> W, U, V;
  };
  std::vector<Level> lv;
  lv.push_back({f.gw, f.gh, std::vector<float>(f.u.size()), std::vector<float>(f.u.size()),
                std::vector<float>(f.u.size())});
  bool any_hole = false, any_known = false;
  for (size_t i = 0; i < f.u.size(); ++i) {
    const bool known = f.conf[i] >= 0.f;
    any_hole |= !known;
    any_known |= known;
    lv[0].W[i] = known ? 1.f : 0.f;
    lv[0].U[i] = known ? f.u[i] : 0.f;
    lv[0].V[i] = known ? f.v[i] : 0.f;
  }
  if (!any_hole) return;
  if (!any_known) {
    std::fill(f.u.begin(), f.u.end(), 0.f);
    std::fill(f.v.begin(), f.v.end(), 0.f);
    std::fill(f.conf.begin(), f.conf.end(), 0.f);
    return;
  }
  // push: sums of weights and weighted values
  while (lv.back().w > 1 || lv.back().h > 1) {
    const Level& c = lv.back();
    Level p{(c.w + 1) / 2, (c.h + 1) / 2, {}, {}, {}};
    p.W.assign((size_t)p.w * p.h, 0.f);
    p.U.assign(p.W.size(), 0.f);
    p.V.assign(p.W.size(), 0.f);
    for (int y = 0; y < c.h; ++y)
      for (int x = 0; x < c.w; ++x) {
        const size_t i = (size_t)y * c.w + x, j = (size_t)(y / 2) * p.w + x / 2;
        const float w = c.W[i];
        if (w == 0.f) continue;
        // level 0 stores values, upper levels store weighted sums
        const float s = lv.size() == 1 ? w : 1.f;
        p.W[j] += w;
        p.U[j] += c.U[i] * s;
        p.V[j] += c.V[i] * s;
      }
    lv.push_back(std::move(p));
  }
  // pull: each level's value is its own average where it has weight, else the parent's
  std::vector<float> pu{0.f}, pv{0.f};
  std::vector<uint8_t> phop{0};
  for (int k = (int)lv.size() - 1; k >= 0; --k) {
    const Level& c = lv[k];
    const int pw = k + 1 < (int)lv.size() ? lv[k + 1].w : 1;
    std::vector<float> cu(c.W.size()), cv(c.W.size());
    std::vector<uint8_t> hop(c.W.size());
    for (int y = 0; y < c.h; ++y)
      for (int x = 0; x < c.w; ++x) {
        const size_t i = (size_t)y * c.w + x;
        const size_t j = k + 1 < (int)lv.size() ? (size_t)(y / 2) * pw + x / 2 : 0;
        if (c.W[i] > 0.f) {
          const float s = k == 0 ? 1.f : 1.f / c.W[i];
          cu[i] = c.U[i] * s;
          cv[i] = c.V[i] * s;
          hop[i] = 0;
        } else {
          cu[i] = pu[j];
          cv[i] = pv[j];
          hop[i] = (uint8_t)std::min(255, phop[j] + 1);
        }
      }
    pu.swap(cu);
    pv.swap(cv);
    phop.swap(hop);
  }
  for (size_t i = 0; i < f.u.size(); ++i) {
    if (f.conf[i] >= 0.f) continue;
    f.u[i] = pu[i];
    f.v[i] = pv[i];
    f.conf[i] = 0.3f * std::pow(0.7f, (float)(phop[i] - 1));
  }
}

}  // namespace

void estimate_block_flow(const PriorsView& t, const PriorsView* nb, int num_nb, int32_t T, const FlowOptions& opts,
                         BlockFlow& out) {
  const int gw = t.gw, gh = t.gh;
  const size_t n = t.size();
  const int32_t P = t.poc;
  out.gw = gw;
  out.gh = gh;
  out.u.assign(n, 0.f);
  out.v.assign(n, 0.f);
  if (T == P) {
    out.conf.assign(n, 1.f);
    return;
  }
  out.conf.assign(n, -1.f);

  std::vector<Acc> exact, other;
  if (opts.project) {
    for (int i = 0; i < num_nb; ++i) {
      const PriorsView& m = nb[i];
      if (m.poc == P || m.gw != gw || m.gh != gh) continue;
      if (exact.empty()) {
        exact.resize(n);
        other.resize(n);
      }
      splat_neighbour(m, P, T, exact.data(), other.data(), gw, gh);
    }
  }

  // own scaling factor and quality per reference POC are few: cache the last one per list
  int32_t last_r[2] = {kNoRef, kNoRef};
  float last_s[2] = {0, 0}, last_q[2] = {0, 0};
  for (size_t b = 0; b < n; ++b) {
    Cand c[4];
    int nc = 0;
    const int8_t pm = t.pred_mode[b];
    if (pm != 1) {
      const int dir = t.inter_dir[b];
      const float bf = block_factor(pm, t.residual[b]);
      for (int l = 0; l < 2; ++l) {
        if (!(dir >> l & 1)) continue;
        const int32_t r = t.ref_poc[2 * b + l];
        if (r == kNoRef || r == P) continue;
        if (r != last_r[l]) {
          last_r[l] = r;
          last_s[l] = (float)(T - P) / (4.f * (float)(r - P));
          last_q[l] = segment_quality(P, T, P, r);
        }
        c[nc++] = {t.mv[4 * b + 2 * l] * last_s[l], t.mv[4 * b + 2 * l + 1] * last_s[l], last_q[l] * bf};
      }
    }
    if (!exact.empty()) {
      if (splat_candidate(exact[b], c[nc])) ++nc;
      if (splat_candidate(other[b], c[nc])) ++nc;
    }
    float u, v, cf;
    if (fuse(c, nc, u, v, cf)) {
      out.u[b] = u;
      out.v[b] = v;
      out.conf[b] = cf;
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
  if (interp == Interp::Nearest) {
    const std::vector<int> cols = centre_blocks(g.left, ow, g.factor, bf.gw);
    const std::vector<int> rows = centre_blocks(g.top, oh, g.factor, bf.gh);
    for (int oy = 0; oy < oh; ++oy) {
      float* u = U + (size_t)oy * ow;
      float* v = V + (size_t)oy * ow;
      float* c = conf + (size_t)oy * ow;
      if (oy > 0 && rows[oy] == rows[oy - 1]) {  // same block row: copy the row above
        std::memcpy(u, u - ow, ow * sizeof(float));
        std::memcpy(v, v - ow, ow * sizeof(float));
        std::memcpy(c, c - ow, ow * sizeof(float));
        continue;
      }
      const size_t base = (size_t)rows[oy] * bf.gw;
      const float* bu = bf.u.data() + base;
      const float* bv = bf.v.data() + base;
      const float* bc = bf.conf.data() + base;
      for (int ox = 0; ox < ow; ++ox) {
        const int b = cols[ox];
        u[ox] = bu[b] * scale;
        v[ox] = bv[b] * scale;
        c[ox] = bc[b];
      }
    }
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
    float* u = U + (size_t)oy * ow;
    float* v = V + (size_t)oy * ow;
    float* c = conf + (size_t)oy * ow;
    for (int ox = 0; ox < ow; ++ox) {
      u[ox] = r0[ox] * w0 + r1[ox] * w1;
      v[ox] = r0[ow + ox] * w0 + r1[ow + ox] * w1;
      c[ox] = r0[2 * ow + ox] * w0 + r1[2 * ow + ox] * w1;
    }
  }
}

}  // namespace bitsr::raster
