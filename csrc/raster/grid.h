// Inputs and output geometry shared by the flow and map rasterizers.
//
// The rasterizer reads the per-4x4 prior arrays of the schema (row-major [gh][gw] over the
// coded picture) through raw pointers, so it serves the HEVC parser's pictures and any
// other source that produces the same arrays.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bitsr::raster {

constexpr int32_t kNoRef = INT32_MIN;  // ref_poc of an unused list

struct PriorsView {
  int gw = 0, gh = 0;  // 4x4 grid of the coded picture
  int32_t poc = 0;
  const int8_t* pred_mode = nullptr;   // 0 inter, 1 intra, 2 skip
  const uint8_t* inter_dir = nullptr;  // bit 0: L0, bit 1: L1
  const int16_t* mv = nullptr;         // [n][list][x, y], quarter luma samples
  const int32_t* ref_poc = nullptr;    // [n][list]
  const uint8_t* residual = nullptr;
  const uint8_t* merge_flag = nullptr;
  const uint8_t* cu_log2 = nullptr;
  const uint8_t* part_mode = nullptr;
  const uint8_t* tu_log2 = nullptr;
  const int8_t* qp_y = nullptr;
  // POCs the picture's slices reference (any list); num_refs < 0: unknown
  const int32_t* refs = nullptr;
  int num_refs = -1;
  size_t size() const { return (size_t)gw * gh; }
};

// The cropped picture (conformance window, in coded luma samples) sampled every `factor`
// samples. Output pixel (ox, oy) covers coded samples [left + ox*f, left + ox*f + f).
struct Geometry {
  int left = 0, top = 0, width = 0, height = 0;
  int factor = 1;
  int out_w() const { return (width + factor - 1) / factor; }
  int out_h() const { return (height + factor - 1) / factor; }
};

// Output column/row -> 4x4 block index holding the centre of the output pixel, clamped
// to the grid.
inline std::vector<int> centre_blocks(int first, int count, int factor, int grid) {
  std::vector<int> b(count);
  for (int o = 0; o < count; ++o) {
    int c = (first + o * factor + factor / 2) >> 2;
    b[o] = c < 0 ? 0 : (c >= grid ? grid - 1 : c);
  }
  return b;
}

}  // namespace bitsr::raster
