// Backward warp of a high-resolution image by a low-resolution, block-constant flow, written
// straight onto the LR grid (pixel-unshuffled): what BitVSR's HR feedback computes as
// pixel_unshuffle(grid_sample(prev, upscale_flow(flow, s))), without an HR sampling grid.
//
// The HR displacement is s * flow(X, Y) for every one of the s x s HR pixels of LR pixel
// (X, Y), so one pair of bilinear weights serves all s^2 phases and the (s+1)^2 HR samples
// they read are fetched once. Border handling is grid_sample's "border" padding with
// align_corners=True: each sample position is clamped to the image before interpolating.
#pragma once
#include <cstddef>
#include <cstdint>

namespace bitsr::raster {

// prev: float [channels][H][W] with H = s*h, W = s*w, read through element strides (sc, sy, sx)
// (so planar and channels-last images are read in place); flow: float [2][h][w] (x, y) in LR
// pixels; out: float [channels * s * s][h][w], channel c * s * s + i * s + j holding HR pixel
// (s*Y + i, s*X + j), or with `channels_last` float [h][w][channels * s * s] (the layout of
// BitVSR's CPU features). Rows [row0, row1) of the LR grid only (callers split work by rows).
struct Strides {
  ptrdiff_t c, y, x;
};
void warp_fold(const float* prev, Strides st, int channels, int h, int w, int s, const float* flow, float* out,
               int row0, int row1, bool channels_last = false);

}  // namespace bitsr::raster
