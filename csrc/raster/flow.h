// Dense optical flow from the motion vectors of a picture and of its neighbours.
//
// For the target picture (POC P) and a picture to warp from (POC T), the flow (u, v) at
// (x, y) says where that content sits in picture T: T(x + u, y + v) ~ P(x, y).
// Motion segments come from the bitstream: a PU of picture m with vector mv pointing at
// reference r moves content by mv over the POC interval (r - m). Assuming constant
// velocity, every segment gives a candidate displacement P -> T:
//   * own vectors (m = P): mv * (T - P) / (r - P)       (TMVP-style POC scaling)
//   * neighbours' vectors whose interval contains P: the segment is projected onto P
//     (splatted where it crosses P) and scaled to (T - P); when {m, r} = {T, P} this is the
//     exact inverse of T's vector, which gives I-pictures and intra blocks their motion.
// Candidates are fused per 4x4 block around the most reliable one; blocks left without a
// candidate are filled from their surroundings (push-pull) with a low confidence.
// Work is spent where it pays: blocks with a vector pointing at T need nothing else; the
// inverse of T's vectors is splatted only onto the others; the remaining neighbours'
// segments (sampled per 8x8 or 16x16) only for pictures without that inverse, onto blocks
// still without a good candidate, and only when they are more than a few (isolated intra
// blocks are left to the fill).
#pragma once
#include <cstdint>
#include <vector>

#include "raster/grid.h"

namespace bitsr::raster {

struct FlowOptions {
  bool project = true;  // use the neighbours' motion segments
  bool fill = true;     // fill blocks without any candidate
};

// Per-4x4-block flow over the coded picture, in luma samples, and confidence in [0, 1].
struct BlockFlow {
  int gw = 0, gh = 0;
  std::vector<float> u, v, conf;
};

void estimate_block_flow(const PriorsView& target, const PriorsView* neighbours, int num_neighbours, int32_t to_poc,
                         const FlowOptions& opts, BlockFlow& out);

enum class Interp { Nearest, Bilinear };

// Samples the block flow at the output geometry. `flow` is [2][out_h][out_w] (u plane then
// v plane) in output pixels (values divided by the factor), `conf` is [out_h][out_w].
void rasterize_flow(const BlockFlow& bf, const Geometry& g, Interp interp, float* flow, float* conf);

}  // namespace bitsr::raster
