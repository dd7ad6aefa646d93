#include "raster/maps.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace bitsr::raster {
namespace {

const char* const kNames[] = {"cu_log2",  "cu_depth", "tu_log2",  "tu_depth", "pred_mode", "skip",
                              "intra",    "inter",    "merge",    "residual", "bi",        "qp",
                              "cu_edges", "pu_edges", "tu_edges", nullptr};

// Offsets of the PU splits inside a CU of size s, per part_mode: vertical (x) and
// horizontal (y); 0 means none.
void pu_splits(int part_mode, int s, int& sx, int& sy) {
  sx = sy = 0;
  switch (part_mode) {
    case 1: sy = s / 2; break;       // 2NxN
    case 2: sx = s / 2; break;       // Nx2N
    case 3: sx = sy = s / 2; break;  // NxN
    case 4: sy = s / 4; break;       // 2NxnU
    case 5: sy = 3 * s / 4; break;   // 2NxnD
    case 6: sx = s / 4; break;       // nLx2N
    case 7: sx = 3 * s / 4; break;   // nRx2N
    default: break;
  }
}

// Boundaries between blocks that tile the picture: a block's left side is a boundary when
// the unit covering it starts at that column (units are aligned to their size).
inline uint8_t aligned_edges(int x, int y, int log2) {
  const int m = (1 << log2) - 1;
  return (uint8_t)(((x & m) == 0 ? 1 : 0) | ((y & m) == 0 ? 2 : 0));
}

}  // namespace

const char* const* map_names() { return kNames; }

bool map_kind_from_name(const std::string& name, MapKind& kind) {
  for (int i = 0; kNames[i]; ++i)
    if (name == kNames[i]) {
      kind = (MapKind)i;
      return true;
    }
  return false;
}

bool map_is_signed(MapKind k) { return k == MapKind::PredMode || k == MapKind::Qp; }
bool map_is_edges(MapKind k) { return k == MapKind::CuEdges || k == MapKind::PuEdges || k == MapKind::TuEdges; }

void block_map(const PriorsView& p, MapKind kind, int log2_ctb, uint8_t* out) {
  const size_t n = p.size();
  switch (kind) {
    case MapKind::CuLog2: std::memcpy(out, p.cu_log2, n); return;
    case MapKind::TuLog2: std::memcpy(out, p.tu_log2, n); return;
    case MapKind::PredMode: std::memcpy(out, p.pred_mode, n); return;
    case MapKind::Qp: std::memcpy(out, p.qp_y, n); return;
    case MapKind::Residual: std::memcpy(out, p.residual, n); return;
    case MapKind::CuDepth:
      for (size_t i = 0; i < n; ++i) out[i] = (uint8_t)std::max(0, log2_ctb - (int)p.cu_log2[i]);
      return;
    case MapKind::TuDepth:
      for (size_t i = 0; i < n; ++i) out[i] = (uint8_t)std::max(0, (int)p.cu_log2[i] - (int)p.tu_log2[i]);
      return;
    case MapKind::Skip:
      for (size_t i = 0; i < n; ++i) out[i] = p.pred_mode[i] == 2;
      return;
    case MapKind::Intra:
      for (size_t i = 0; i < n; ++i) out[i] = p.pred_mode[i] == 1;
      return;
    case MapKind::Inter:
      for (size_t i = 0; i < n; ++i) out[i] = p.pred_mode[i] != 1;
      return;
    case MapKind::Merge:
      for (size_t i = 0; i < n; ++i) out[i] = p.pred_mode[i] != 1 && p.merge_flag[i];
      return;
    case MapKind::Bi:
      for (size_t i = 0; i < n; ++i) out[i] = p.pred_mode[i] != 1 && p.inter_dir[i] == 3;
      return;
    case MapKind::CuEdges:
    case MapKind::TuEdges:
      for (int by = 0; by < p.gh; ++by)
        for (int bx = 0; bx < p.gw; ++bx) {
          const size_t i = (size_t)by * p.gw + bx;
          uint8_t e = aligned_edges(4 * bx, 4 * by, p.cu_log2[i]);
          if (kind == MapKind::TuEdges) e |= aligned_edges(4 * bx, 4 * by, std::min(p.tu_log2[i], p.cu_log2[i]));
          out[i] = e;
        }
      return;
    case MapKind::PuEdges:
      for (int by = 0; by < p.gh; ++by)
        for (int bx = 0; bx < p.gw; ++bx) {
          const size_t i = (size_t)by * p.gw + bx;
          const int log2 = p.cu_log2[i], s = 1 << log2;
          const int rx = (4 * bx) & (s - 1), ry = (4 * by) & (s - 1);
          int sx, sy;
          pu_splits(p.part_mode[i], s, sx, sy);
          out[i] = (uint8_t)((rx == 0 || (sx && rx == sx) ? 1 : 0) | (ry == 0 || (sy && ry == sy) ? 2 : 0));
        }
      return;
  }
}

void rasterize_nearest(const uint8_t* grid, int gw, int gh, const Geometry& g, uint8_t* out) {
  const int ow = g.out_w(), oh = g.out_h();
  const std::vector<int> cols = centre_blocks(g.left, ow, g.factor, gw);
  const std::vector<int> rows = centre_blocks(g.top, oh, g.factor, gh);
  const bool broadcast = g.factor == 1 && (g.left & 3) == 0;  // 4 samples per block
  for (int oy = 0; oy < oh; ++oy) {
    uint8_t* o = out + (size_t)oy * ow;
    if (oy > 0 && rows[oy] == rows[oy - 1]) {
      std::memcpy(o, o - ow, ow);
      continue;
    }
    const uint8_t* r = grid + (size_t)rows[oy] * gw;
    if (broadcast) {
      const uint8_t* rb = r + (g.left >> 2);
      const int full = ow >> 2;
      for (int b = 0; b < full; ++b) std::memset(o + 4 * b, rb[b], 4);
      for (int ox = 4 * full; ox < ow; ++ox) o[ox] = rb[full];
      continue;
    }
    for (int ox = 0; ox < ow; ++ox) o[ox] = r[cols[ox]];
  }
}

void rasterize_edges(const uint8_t* grid, int gw, int gh, const Geometry& g, uint8_t* out) {
  const int ow = g.out_w(), oh = g.out_h(), f = g.factor;
  // block columns/rows whose first sample lies inside an output pixel: [lo, hi)
  auto starts = [f](int first, int count, int n, std::vector<int>& lo, std::vector<int>& hi) {
    lo.resize(count);
    hi.resize(count);
    for (int o = 0; o < count; ++o) {
      const int a = first + o * f, b = a + f;
      lo[o] = std::min(n, std::max(0, (a + 3) >> 2));
      hi[o] = std::min(n, std::max(0, (b + 3) >> 2));
    }
  };
  if (f == 1 && (g.left & 3) == 0 && (g.top & 3) == 0) {
    // full resolution, aligned: vertical boundaries on every 4th column, horizontal ones
    // on the first row of each block row; the other three rows repeat the second
    for (int oy = 0; oy < oh; ++oy) {
      uint8_t* o = out + (size_t)oy * ow;
      if (oy % 4 >= 2) {
        std::memcpy(o, o - ow, ow);
        continue;
      }
      const uint8_t* r = grid + (size_t)((g.top >> 2) + oy / 4) * gw + (g.left >> 2);
      const bool first = oy % 4 == 0;
      for (int ox = 0; ox < ow; ++ox) {
        const uint8_t e = r[ox >> 2];
        o[ox] = (uint8_t)(((ox & 3) == 0 ? (e & 1) : 0) | (first ? (e & 2) : 0));
      }
    }
    return;
  }
  std::vector<int> xlo, xhi, ylo, yhi;
  starts(g.left, ow, gw, xlo, xhi);
  starts(g.top, oh, gh, ylo, yhi);
  const std::vector<int> cols = centre_blocks(g.left, ow, f, gw);
  const std::vector<int> rows = centre_blocks(g.top, oh, f, gh);
  for (int oy = 0; oy < oh; ++oy) {
    uint8_t* o = out + (size_t)oy * ow;
    const uint8_t* crow = grid + (size_t)rows[oy] * gw;
    for (int ox = 0; ox < ow; ++ox) {
      uint8_t e = 0;
      for (int bx = xlo[ox]; bx < xhi[ox]; ++bx) e |= crow[bx] & 1;
      for (int by = ylo[oy]; by < yhi[oy]; ++by) e |= grid[(size_t)by * gw + cols[ox]] & 2;
      o[ox] = e;
    }
  }
}

}  // namespace bitsr::raster
