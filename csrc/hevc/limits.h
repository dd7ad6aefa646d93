// Resource limits applied while parsing untrusted streams. Defaults follow the largest
// HEVC level (6.2) with some headroom; every allocation the stream can drive is bounded
// by one of these.
#pragma once
#include <cstdint>

namespace bitsr {

struct Limits {
  int64_t max_luma_samples = 35651584LL * 2;  // 2x MaxLumaPs of level 6.2
  int max_dimension = 16888;                  // sqrt(8 * MaxLumaPs), as in A.4.1
  int max_slice_segments_per_picture = 1024;  // level 6.2 allows 600 slices per picture
  int max_entry_points = 4400;                // tiles 20x22, or one per CTB row at 8K/16
  int max_dpb_pictures = 17;                  // 16 references + the current picture
  int64_t max_nal_size = 512LL << 20;         // a single NAL unit above this is rejected
};

}  // namespace bitsr
