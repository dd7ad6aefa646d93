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

// ORs the 16 bits of a 16-block chunk starting at block bx into a row bitset.
inline void put_bits(std::vector<uint64_t>& v, int bx, uint64_t bits) {
  v[bx >> 6] |= bits << (bx & 63);
  if ((bx & 63) > 48) v[(bx >> 6) + 1] |= bits >> (64 - (bx & 63));
}

// Index of the first set bit at or after `from` (n if none) in a bitset of n bits.
inline int next_bit(const std::vector<uint64_t>& v, int from, int n) {
  if (from >= n) return n;
  int word = from >> 6;
  uint64_t w = v[word] & (~(uint64_t)0 << (from & 63));
  while (!w) {
    if (++word >= (int)v.size()) return n;
    w = v[word];
  }
  return std::min(n, word * 64 + __builtin_ctzll(w));
}

// For list L of one row of picture m: `act` marks the blocks with a list-L vector pointing
// at POC P (inter, list used), `start` those of them that begin a run (the block before is
// not active or moves differently). One bit per block; vectorised, since comparing block by
// block mispredicts a branch at every run end.
template <int L>
void exact_row_masks(const PriorsView& m, size_t row, int gw, int32_t P, std::vector<uint64_t>& act,
                     std::vector<uint64_t>& start) {
  const size_t words = ((size_t)gw + 63) / 64;
  act.assign(words, 0);
  start.assign(words, 0);
  auto active = [&](size_t b) { return (m.inter_dir[b] >> L & 1) && m.pred_mode[b] != 1 && m.ref_poc[2 * b + L] == P; };
  auto same = [&](size_t a, size_t b) {
    uint32_t ma, mb;
    std::memcpy(&ma, m.mv + 4 * a + 2 * L, 4);
    std::memcpy(&mb, m.mv + 4 * b + 2 * L, 4);
    return ma == mb && m.pred_mode[a] == m.pred_mode[b] && m.residual[a] == m.residual[b];
  };
  bool prev = active(row);
  if (prev) {
    act[0] = 1;
    start[0] = 1;
  }
  int bx = 1;
#if defined(__SSE2__)
  auto ld = [](const void* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
  constexpr int kLane = L == 0 ? _MM_SHUFFLE(2, 0, 2, 0) : _MM_SHUFFLE(3, 1, 3, 1);
  const __m128i one = _mm_set1_epi8(1), lbit = _mm_set1_epi8((char)(1 << L)), poc = _mm_set1_epi32(P);
  const int32_t* mv32 = reinterpret_cast<const int32_t*>(m.mv);  // per block: L0 (x, y), L1 (x, y)
  for (; bx + 16 <= gw; bx += 16) {
    const size_t c = row + bx;
    const __m128i pm = ld(m.pred_mode + c);
    __m128i a8 =
        _mm_andnot_si128(_mm_cmpeq_epi8(pm, one), _mm_cmpeq_epi8(_mm_and_si128(ld(m.inter_dir + c), lbit), lbit));
    const __m128i s8 = _mm_and_si128(_mm_cmpeq_epi8(pm, ld(m.pred_mode + c - 1)),
                                     _mm_cmpeq_epi8(ld(m.residual + c), ld(m.residual + c - 1)));
    uint32_t a = (uint32_t)_mm_movemask_epi8(a8), sm = (uint32_t)_mm_movemask_epi8(s8);
    uint32_t ap = 0, sv = 0;
    for (int j = 0; j < 4; ++j) {  // 4 blocks: two loads of (L0, L1) pairs each
      const size_t d = 2 * (c + 4 * j);
      const __m128 r = _mm_shuffle_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ld(m.ref_poc + d), poc)),
                                      _mm_castsi128_ps(_mm_cmpeq_epi32(ld(m.ref_poc + d + 4), poc)), kLane);
      const __m128 e = _mm_shuffle_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(ld(mv32 + d), ld(mv32 + d - 2))),
                                      _mm_castsi128_ps(_mm_cmpeq_epi32(ld(mv32 + d + 4), ld(mv32 + d + 2))), kLane);
      ap |= (uint32_t)_mm_movemask_ps(r) << (4 * j);
      sv |= (uint32_t)_mm_movemask_ps(e) << (4 * j);
    }
    a &= ap;
    const uint32_t before = (a << 1 | (prev ? 1u : 0u)) & 0xFFFFu;  // the block before is active
    const uint32_t st = a & ~(before & sm & sv) & 0xFFFFu;
    put_bits(act, bx, a);
    put_bits(start, bx, st);
    prev = a >> 15 & 1;
  }
#endif
  for (; bx < gw; ++bx) {
    const size_t b = row + bx;
    const bool cur = active(b);
    if (cur) {
      act[bx >> 6] |= (uint64_t)1 << (bx & 63);
      if (!prev || !same(b - 1, b)) start[bx >> 6] |= (uint64_t)1 << (bx & 63);
    }
    prev = cur;
  }
}

// Marks in `starts` (one bit per block of the row) the blocks whose motion differs from the
// block before them, i.e. where a run of equal motion starts; block 0 always starts one.
// Vectorised: comparing block by block mispredicts a branch at every run end.
void run_starts(const PriorsView& t, size_t row, int gw, std::vector<uint64_t>& starts) {
  starts.assign(((size_t)gw + 63) / 64, 0);
  auto same = [&](size_t a, size_t b) {
    uint64_t ma, mb, ra, rb;
    std::memcpy(&ma, t.mv + 4 * a, 8);
    std::memcpy(&mb, t.mv + 4 * b, 8);
    std::memcpy(&ra, t.ref_poc + 2 * a, 8);
    std::memcpy(&rb, t.ref_poc + 2 * b, 8);
    return ma == mb && ra == rb && t.pred_mode[a] == t.pred_mode[b] && t.inter_dir[a] == t.inter_dir[b] &&
           t.residual[a] == t.residual[b];
  };
  starts[0] = 1;
  int bx = 1;
#if defined(__SSE2__)
  for (; bx + 16 <= gw; bx += 16) {
    const size_t b = row + bx;
    auto ld = [](const void* p) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p)); };
    __m128i eq = _mm_and_si128(_mm_cmpeq_epi8(ld(t.pred_mode + b), ld(t.pred_mode + b - 1)),
                               _mm_cmpeq_epi8(ld(t.inter_dir + b), ld(t.inter_dir + b - 1)));
    eq = _mm_and_si128(eq, _mm_cmpeq_epi8(ld(t.residual + b), ld(t.residual + b - 1)));
    uint32_t same_mask = (uint32_t)_mm_movemask_epi8(eq);
    uint32_t same_mv = 0;
    for (int j = 0; j < 8; ++j) {  // two blocks (8 bytes of vectors, 8 of POCs each) per step
      const size_t c = b + 2 * j;
      __m128i e = _mm_and_si128(_mm_cmpeq_epi32(ld(t.mv + 4 * c), ld(t.mv + 4 * (c - 1))),
                                _mm_cmpeq_epi32(ld(t.ref_poc + 2 * c), ld(t.ref_poc + 2 * (c - 1))));
      e = _mm_and_si128(e, _mm_shuffle_epi32(e, _MM_SHUFFLE(2, 3, 0, 1)));
      same_mv |= (uint32_t)_mm_movemask_pd(_mm_castsi128_pd(e)) << (2 * j);
    }
    put_bits(starts, bx, ~(same_mask & same_mv) & 0xFFFFu);
  }
#endif
  for (; bx < gw; ++bx)
    if (!same(row + bx - 1, row + bx)) starts[bx >> 6] |= (uint64_t)1 << (bx & 63);
}

// Bit masks of one row for the run search of the exact inverse (one bit per block).
struct RowBits {
  std::vector<uint64_t> act, start, brk;  // active blocks, run starts, run ends
};

// Splats the motion segments of one neighbour that cross the target's POC: with `exact`,
// only those joining T and P (T's vectors pointing at P), else all the others.
// The neighbour is sampled every `step` blocks and accumulated on a grid of cells of
// step x step blocks (aw x ah cells): a sample moves as one cell. Cells with need[c] == 0
// receive nothing (null: all cells). Samples of a row with the same motion (a PU, or
// several) move as one run: the run lands on cells fx..fx+len with the fractional overlap
// only at its ends, so it costs one accumulation per covered cell and row instead of four
// per sample. `bits`: scratch for the exact case.
bool splat_neighbour(const PriorsView& m, int32_t P, int32_t T, bool exact, int step, const uint8_t* need, Acc* acc,
                     int aw, int ah, RowBits& bits) {
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
  int32_t last_r = kNoRef;
  float inv = 0.f, qseg = 0.f;
  // Lands the run of `len` cells starting at block (bx, by), list l, reference r.
  auto land = [&](int l, int bx, int by, int len, int32_t r) {
    const size_t b = (size_t)by * m.gw + bx;
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
    if (fx + (float)len < 0.f || fy + 1.f < 0.f || fx >= (float)aw || fy >= (float)ah) return;
    const int ix = (int)fx, iy = (int)fy;
    const float ax = gx - fx, ay = gy - fy;
    const float du = vx * (float)((int64_t)T - P), dv = vy * (float)((int64_t)T - P);
    const float q = qseg * block_factor(pmode[b], resid[b]);
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
  };
  if (exact && step == 1) {  // T's vectors pointing at P: runs found from bit masks
    if (M != T) return false;
    std::vector<uint64_t>&act = bits.act, &start = bits.start, &brk = bits.brk;
    const int gw = m.gw;
    for (int l = 0; l < 2; ++l)
      for (int by = 0; by < m.gh; ++by) {
        const size_t row = (size_t)by * gw;
        if (l == 0)
          exact_row_masks<0>(m, row, gw, P, act, start);
        else
          exact_row_masks<1>(m, row, gw, P, act, start);
        brk.resize(act.size());
        for (size_t w = 0; w < act.size(); ++w) brk[w] = start[w] | ~act[w];  // where runs end
        for (int bx = next_bit(start, 0, gw); bx < gw;) {
          const int end = next_bit(brk, bx + 1, gw);
          land(l, bx, by, end - bx, P);
          bx = next_bit(start, end, gw);
        }
      }
    return hit;
  }
  for (int l = 0; l < 2; ++l) {
    int32_t tested_r = kNoRef;
    bool tested_ok = false;
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
        land(l, bx, by, len, r);
        bx = end;
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

// Working memory of fill_holes: the holes, and the levels of the pyramid above them.
struct FillScratch {
  struct Sum {
    float w, u, v;
  };
  struct Level {
    int w = 0, h = 0;
    std::vector<Sum> s;
    std::vector<uint8_t> done;
  };
  std::vector<uint32_t> holes;
  std::vector<Level> levels;  // levels[k] is level k; levels[0] is unused (the blocks)
};

// Push-pull fill of the blocks without a candidate (conf < 0 marks them): a hole takes the
// mean of the known blocks in the smallest aligned 2^k x 2^k cell around it (k >= 1) that
// holds any, with a confidence that decays with k. This is a push-pull pyramid evaluated
// lazily: holes are mostly few (intra blocks), so only the cells above them are summed,
// each once, in the order a full pyramid would add them (the result is the same to the bit).
void fill_holes(BlockFlow& f, FillScratch& scratch) {
  using Sum = FillScratch::Sum;
  using Level = FillScratch::Level;
  const size_t n = f.u.size();
  std::vector<uint32_t>& holes = scratch.holes;
  holes.clear();
  const float* __restrict cf = f.conf.data();
  size_t i = 0;
#if defined(__SSE2__)
  // holes are mostly few: test 16 blocks at a time
  const __m128 zero = _mm_setzero_ps();
  for (; i + 16 <= n; i += 16) {
    const int m = _mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(cf + i), zero)) |
                  _mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(cf + i + 4), zero)) << 4 |
                  _mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(cf + i + 8), zero)) << 8 |
                  _mm_movemask_ps(_mm_cmplt_ps(_mm_loadu_ps(cf + i + 12), zero)) << 12;
    for (unsigned bits = (unsigned)m; bits; bits &= bits - 1) holes.push_back((uint32_t)(i + __builtin_ctz(bits)));
  }
#endif
  for (; i < n; ++i)
    if (cf[i] < 0.f) holes.push_back((uint32_t)i);
  if (holes.empty()) return;
  if (holes.size() == n) {
    std::fill(f.u.begin(), f.u.end(), 0.f);
    std::fill(f.v.begin(), f.v.end(), 0.f);
    std::fill(f.conf.begin(), f.conf.end(), 0.f);
    return;
  }
  std::vector<Level>& lv = scratch.levels;
  int top = 0;
  for (int w = f.gw, h = f.gh; w > 1 || h > 1;) {
    w = (w + 1) / 2;
    h = (h + 1) / 2;
    ++top;
    if ((int)lv.size() <= top) lv.resize(top + 1);
    lv[top].w = w;
    lv[top].h = h;
    lv[top].s.resize((size_t)w * h);
    lv[top].done.assign((size_t)w * h, 0);
  }
  const float* fu = f.u.data();
  const float* fv = f.v.data();
  const int gw = f.gw, gh = f.gh;
  // level 1 from the blocks: pairs of a row, then the two rows
  auto level1 = [&](int X, int Y) {
    Sum r{0.f, 0.f, 0.f};
    for (int y = 2 * Y; y < std::min(2 * Y + 2, gh); ++y) {
      const size_t i = (size_t)y * gw + 2 * X;
      const float m0 = cf[i] >= 0.f ? 1.f : 0.f;
      if (2 * X + 1 < gw) {
        const float m1 = cf[i + 1] >= 0.f ? 1.f : 0.f;
        r.w += m0 + m1;
        r.u += m0 * fu[i] + m1 * fu[i + 1];
        r.v += m0 * fv[i] + m1 * fv[i + 1];
      } else {
        r.w += m0;
        r.u += m0 * fu[i];
        r.v += m0 * fv[i];
      }
    }
    return r;
  };
  // sum of level k at (X, Y), memoised
  auto sum = [&](auto&& self, int k, int X, int Y) -> Sum {
    Level& L = lv[k];
    const size_t i = (size_t)Y * L.w + X;
    if (L.done[i]) return L.s[i];
    Sum r{0.f, 0.f, 0.f};
    if (k == 1) {
      r = level1(X, Y);
    } else {
      const Level& C = lv[k - 1];
      for (int y = 2 * Y; y < std::min(2 * Y + 2, C.h); ++y)
        for (int x = 2 * X; x < std::min(2 * X + 2, C.w); ++x) {
          const Sum c = self(self, k - 1, x, y);
          r.w += c.w;
          r.u += c.u;
          r.v += c.v;
        }
    }
    L.s[i] = r;
    L.done[i] = 1;
    return r;
  };
  // confidence by distance, 0.3 * 0.7^(k - 1) (a table: pow per hole was the cost)
  static const std::vector<float> hop_conf = [] {
    std::vector<float> t(256);
    for (int h = 0; h < 256; ++h) t[h] = 0.3f * std::pow(0.7f, (float)h);
    return t;
  }();
  float* ou = f.u.data();
  float* ov = f.v.data();
  float* oc = f.conf.data();
  for (const uint32_t i : holes) {
    int X = (int)(i % (uint32_t)gw), Y = (int)(i / (uint32_t)gw);
    float u = 0.f, v = 0.f;
    int k = 1;
    for (; k <= top; ++k) {
      X >>= 1;
      Y >>= 1;
      const Sum s = sum(sum, k, X, Y);
      if (s.w > 0.f) {
        u = s.u / s.w;
        v = s.v / s.w;
        break;
      }
    }
    ou[i] = u;
    ov[i] = v;
    oc[i] = hop_conf[std::min(k, top) - 1];
  }
}

// ---- estimate_block_flow, pass by pass -----------------------------------------------

// Blocks still needing candidates after a pass: those whose best candidate is less reliable
// than this also take the next pass's ones.
constexpr float kNeedBelow = 0.5f;
// The projections run only when at least this share of the blocks needs them (and at least
// one block): sparse gaps (a few intra blocks) are left to the fill, since the projections
// scan whole neighbour pictures.
constexpr float kMinNeedShare = 0.02f;
constexpr Cand kNoCand{0.f, 0.f, -1.f};  // q < 0: no candidate

// A run of blocks of one row with identical motion (mostly one PU): they share their own
// candidates, evaluated once by the own-vector pass and kept for the passes after it.
struct Run {
  Cand c[2];
  int nc;
  float best;        // the best quality among c
  uint32_t b0, len;  // its blocks: b0 .. b0 + len - 1, in one row
  uint8_t need;      // it has no vector pointing at T: the later passes look at it
};

// Working memory of estimate_block_flow, shared by its passes and passed to each of them.
// estimate_block_flow keeps one per thread (a thread_local) and reuses it on every call, so
// that its buffers stay allocated between pictures; nothing in it carries over from one call
// to the next but capacity.
struct FlowScratch {
  std::vector<const PriorsView*> usable;  // neighbours with motion to project (same size, other POC)
  std::vector<Run> runs;                  // the target's runs, in block order
  std::vector<uint8_t> need;              // per block: still without a good candidate
  std::vector<uint64_t> starts;           // run starts of one target row
  RowBits bits;                           // run search in T's rows (exact inverse)
  std::vector<Acc> exact;                 // per block: the exact inverse's splatted sums
  std::vector<uint8_t> need_cell;         // per cell: a block of it needs candidates
  std::vector<Acc> other;                 // per cell: the other segments' splatted sums
  std::vector<Cand> other_cand;           // per cell: their candidate
  FillScratch fill;
};

// A block's own candidates: its vectors POC-scaled to T. The scaling factor and quality
// depend only on the reference POC, and neighbouring blocks mostly share it: the last one
// per list is cached.
class OwnCandidates {
 public:
  OwnCandidates(const PriorsView& t, int32_t T) : t_(t), P_(t.poc), T_(T) {}

  // Writes the candidates of block b into c (up to 2) and returns their number.
  int operator()(size_t b, Cand* c) {
    int nc = 0;
    const int8_t pm = t_.pred_mode[b];
    if (pm == 1) return 0;
    const int dir = t_.inter_dir[b];
    const float bf = block_factor(pm, t_.residual[b]);
    for (int l = 0; l < 2; ++l) {
      if (!(dir >> l & 1)) continue;
      const int32_t r = t_.ref_poc[2 * b + l];
      if (r == kNoRef || r == P_) continue;
      if (r != last_r_[l]) {
        last_r_[l] = r;
        last_s_[l] = (float)((int64_t)T_ - P_) / (4.f * (float)((int64_t)r - P_));
        last_q_[l] = segment_quality(P_, T_, P_, r);
      }
      c[nc++] = {t_.mv[4 * b + 2 * l] * last_s_[l], t_.mv[4 * b + 2 * l + 1] * last_s_[l], last_q_[l] * bf};
    }
    return nc;
  }

 private:
  const PriorsView& t_;
  const int32_t P_, T_;
  int32_t last_r_[2] = {kNoRef, kNoRef};
  float last_s_[2] = {0, 0}, last_q_[2] = {0, 0};
};

// Fuses block b's own candidates (its run's) with up to two extra ones (q < 0: none) into
// the output; a block that gains nothing keeps the values of the own-vector pass. Returns the
// best quality among all of them.
inline float refuse(const Run& r, size_t b, const Cand& e1, const Cand& e2, float* ou, float* ov, float* oc) {
  if (e1.q < 0.f && e2.q < 0.f) return r.best;
  Cand c[4];
  int nc = r.nc;
  for (int i = 0; i < nc; ++i) c[i] = r.c[i];
  if (e1.q >= 0.f) c[nc++] = e1;
  if (e2.q >= 0.f) c[nc++] = e2;
  const float best = std::max(r.best, std::max(e1.q, e2.q));
  float u, v, cf;
  fuse(c, nc, u, v, cf);
  ou[b] = u;
  ov[b] = v;
  oc[b] = cf;
  return best;
}

// The candidate of splatted sums (q < 0: none).
inline Cand acc_candidate(const Acc& a) {
  Cand c;
  if (!splat_candidate(a, c)) c = kNoCand;
  return c;
}

// Pass 1, own vectors: every block gets the fusion of its own candidates (conf < 0: none,
// a hole) and is marked as needing more unless one of them points at T itself; the runs are
// kept in S.runs. Returns the number of blocks needing more.
size_t own_vector_pass(const PriorsView& t, int32_t T, FlowScratch& S, BlockFlow& out) {
  const int gw = t.gw, gh = t.gh;
  OwnCandidates own(t, T);
  S.runs.clear();
  S.need.assign(t.size(), 0);
  size_t num_need = 0;
  // raw pointers: byte stores (need) would otherwise make the compiler reload every
  // vector's data pointer in the inner loops
  float* __restrict ou = out.u.data();
  float* __restrict ov = out.v.data();
  float* __restrict oc = out.conf.data();
  uint8_t* __restrict nd_of = S.need.data();
  for (int by = 0; by < gh; ++by) {
    const size_t row = (size_t)by * gw;
    run_starts(t, row, gw, S.starts);
    int bx = 0;
    while (bx < gw) {
      const int end = next_bit(S.starts, bx + 1, gw);  // the next run's start
      const size_t b = row + bx;
      Run r;
      r.nc = own(b, r.c);
      r.best = 0.f;
      for (int i = 0; i < r.nc; ++i) r.best = std::max(r.best, r.c[i].q);
      r.b0 = (uint32_t)b;
      r.len = (uint32_t)(end - bx);
      float u = 0.f, v = 0.f, cf = -1.f;
      fuse(r.c, r.nc, u, v, cf);
      // a block with a vector pointing at T itself needs nothing else
      const uint8_t nd = r.best < 0.8f;
      r.need = nd;
      S.runs.push_back(r);
      for (size_t i = b; i < row + end; ++i) {
        ou[i] = u;
        ov[i] = v;
        oc[i] = cf;
        nd_of[i] = nd;
      }
      num_need += nd * (size_t)(end - bx);
      bx = end;
    }
  }
  return num_need;
}

// Pass 2a, exact inverse: T's vectors pointing at P, splatted onto the blocks that need
// candidates (into S.exact). Returns whether any landed.
bool splat_exact_inverse(const PriorsView& t, int32_t T, FlowScratch& S) {
  bool have_exact = false;
  for (const PriorsView* m : S.usable)
    if (m->poc == T) {
      S.exact.assign(t.size(), Acc());
      have_exact = splat_neighbour(*m, t.poc, T, true, 1, S.need.data(), S.exact.data(), t.gw, t.gh, S.bits);
    }
  return have_exact;
}

// Pass 2b: the runs needing candidates fuse in the exact ones (when `have_exact`), block by
// block; blocks whose best candidate is now good enough stop needing. Along a run the
// splatted sums mostly repeat (a splatted run of T gives equal sums to the blocks it covers
// fully), and so does the fusion: it is evaluated once per change. Returns the number of
// blocks still needing candidates.
size_t fuse_exact_inverse(bool have_exact, FlowScratch& S, BlockFlow& out) {
  float* __restrict ou = out.u.data();
  float* __restrict ov = out.v.data();
  float* __restrict oc = out.conf.data();
  uint8_t* __restrict nd_of = S.need.data();
  size_t num_need = 0;
  for (const Run& r : S.runs) {
    if (!r.need) continue;
    const size_t b1 = (size_t)r.b0 + r.len;
    if (!have_exact) {
      if (r.best < kNeedBelow)
        num_need += r.len;
      else
        std::memset(nd_of + r.b0, 0, r.len);
      continue;
    }
    const Acc* last_e = nullptr;
    float last_best = 0.f;
    size_t last_b = 0;
    for (size_t b = r.b0; b < b1; ++b) {
      const Acc* e = &S.exact[b];
      float best;
      if (last_e && std::memcmp(e, last_e, sizeof(Acc)) == 0) {
        best = last_best;
        ou[b] = ou[last_b];
        ov[b] = ov[last_b];
        oc[b] = oc[last_b];
      } else {
        best = refuse(r, b, acc_candidate(*e), kNoCand, ou, ov, oc);
        last_e = e;
        last_best = best;
      }
      last_b = b;
      if (best < kNeedBelow)
        ++num_need;
      else
        nd_of[b] = 0;
    }
  }
  return num_need;
}

// Marks in S.need_cell the cells of st x st blocks (cw x ch of them) holding a block that
// still needs candidates.
const uint8_t* cells_needing(int gw, int gh, int st, int cw, int ch, FlowScratch& S) {
  S.need_cell.assign((size_t)cw * ch, 0);
  for (int by = 0; by < gh; ++by) {
    const uint8_t* nr = S.need.data() + (size_t)by * gw;
    uint8_t* cr = S.need_cell.data() + (size_t)(by / st) * cw;
    for (int cx = 0, bx = 0; cx < cw; ++cx)  // no division per block
      for (const int e = std::min(bx + st, gw); bx < e; ++bx) cr[cx] |= nr[bx];
  }
  return S.need_cell.data();
}

// One candidate per accumulated cell (q < 0: none), for the cells that need one.
// A splatted run gives the same sums to all the cells it covers fully: runs of equal sums
// are evaluated once.
void cell_candidates(const std::vector<Acc>& acc, const uint8_t* cneed, std::vector<Cand>& cand) {
  cand.resize(acc.size());
  const Acc* prev = nullptr;
  for (size_t c = 0; c < acc.size(); ++c) {
    if (!cneed[c]) {
      cand[c] = kNoCand;
      continue;
    }
    if (prev && std::memcmp(prev, &acc[c], sizeof(Acc)) == 0) {
      cand[c] = cand[prev - acc.data()];
      continue;
    }
    if (!splat_candidate(acc[c], cand[c])) cand[c] = kNoCand;
    prev = &acc[c];
  }
}

// Pass 3, other neighbours, for pictures without the exact inverse (say, an I-picture that
// T does not reference; where the inverse exists they add next to nothing: warp PSNR over
// the bench clips +0.02 dB at CRF 22 and 28, 0.00 at 34, for 10-25% of the time): the blocks
// still without a good candidate take every other segment crossing P, sampled and
// accumulated on cells of st x st blocks. They are approximate anyway (extrapolated or
// interpolated in time), and scanning whole pictures dominates the cost: st is 2 (8x8) up
// to 1280x720 and 4 (16x16) above, which at 1080p costs 0.04 dB of warp PSNR and saves
// about 10% of the time.
void other_neighbours_pass(const PriorsView& t, int32_t T, FlowScratch& S, BlockFlow& out) {
  const int gw = t.gw, gh = t.gh;
  const int st = t.size() > (size_t)320 * 180 ? 4 : 2;
  const int cw = (gw + st - 1) / st, ch = (gh + st - 1) / st;
  const uint8_t* cneed = cells_needing(gw, gh, st, cw, ch, S);
  S.other.assign((size_t)cw * ch, Acc());
  bool any = false;
  for (const PriorsView* m : S.usable)
    any |= splat_neighbour(*m, t.poc, T, false, st, cneed, S.other.data(), cw, ch, S.bits);
  if (!any) return;
  cell_candidates(S.other, cneed, S.other_cand);
  float* __restrict ou = out.u.data();
  float* __restrict ov = out.v.data();
  float* __restrict oc = out.conf.data();
  const uint8_t* __restrict nd_of = S.need.data();
  for (const Run& r : S.runs) {
    if (!r.need) continue;
    const int by = (int)(r.b0 / (uint32_t)gw), bx0 = (int)(r.b0 - (uint32_t)by * gw);
    const Cand* orow = S.other_cand.data() + (size_t)(by / st) * cw;
    int cx = bx0 / st, left = st - bx0 % st;  // the block's cell, and blocks left in it
    for (size_t b = r.b0; b < (size_t)r.b0 + r.len; ++b) {
      const Cand& o = orow[cx];
      if (nd_of[b] && o.q >= 0.f) refuse(r, b, kNoCand, o, ou, ov, oc);
      if (--left == 0) {
        ++cx;
        left = st;
      }
    }
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
  // every block is written by the own-vector pass
  out.u.resize(n);
  out.v.resize(n);
  out.conf.resize(n);
  // One scratch per thread, reused by every call (see FlowScratch). A plain reference: every
  // use of a thread_local in a shared object calls __tls_get_addr.
  thread_local FlowScratch scratch;
  FlowScratch& S = scratch;
  S.usable.clear();
  if (opts.project)
    for (int i = 0; i < num_nb; ++i)
      if (nb[i].poc != P && nb[i].gw == gw && nb[i].gh == gh) S.usable.push_back(&nb[i]);

  // own vectors everywhere; T's exact inverse where they do not reach T; for pictures
  // without that inverse, the other neighbours' segments where no good candidate is left;
  // then the holes
  size_t num_need = own_vector_pass(t, T, S, out);
  const size_t min_need = std::max<size_t>((size_t)(kMinNeedShare * (float)n), 1);
  const bool have_exact = num_need >= min_need && splat_exact_inverse(t, T, S);
  num_need = fuse_exact_inverse(have_exact, S, out);
  if (num_need >= min_need && !have_exact && !S.usable.empty()) other_neighbours_pass(t, T, S, out);
  if (opts.fill) {
    fill_holes(out, S.fill);
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
