// Resource limits applied while parsing untrusted streams. Defaults follow the largest
// HEVC level (6.2) with some headroom; every allocation the stream can drive is bounded
// by one of these or by a range the syntax itself fixes (parameter set ids: 16 VPS, 16 SPS,
// 64 PPS; 16 references per list; 64 short-term RPS per SPS). Exceeding a limit raises
// LimitError in strict and concealing mode alike: limits are policy, not damage.
//
// Worst case with the defaults: a picture's priors take 30 bytes per 4x4 block, so about
// 134 MB at max_luma_samples; the DPB holds at most max_dpb_pictures of them and the
// queues of finished pictures at most max_queued_bytes. Work per picture is linear in its
// area, so a small NAL unit can cost a full picture of work: lower max_luma_samples for
// input whose picture size you know.
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
  // Finished pictures waiting in Decoder::decoded / Decoder::output (not yet popped),
  // counted at the current picture size; bounds a consumer that pops too rarely and a
  // container packet that holds many pictures.
  int64_t max_queued_bytes = 4LL << 30;
};

}  // namespace bitsr
