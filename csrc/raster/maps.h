// Per-pixel (or per-output-pixel) maps of the coding structure: CU/TU sizes and depths,
// prediction modes, residual and QP, and block-boundary maps of CUs, PUs and TUs.
#pragma once
#include <cstdint>
#include <string>

#include "raster/grid.h"

namespace bitsr::raster {

enum class MapKind {
  CuLog2,    // log2 CU size
  CuDepth,   // CTB log2 - CU log2 (quadtree depth)
  TuLog2,    // log2 luma transform size
  TuDepth,   // CU log2 - TU log2 (TrafoDepth)
  PredMode,  // 0 inter, 1 intra, 2 skip (int8)
  Skip,      // 1 for skip CUs
  Intra,     // 1 for intra CUs
  Inter,     // 1 for inter and skip CUs
  Merge,     // 1 for merge PUs (skip included)
  Residual,  // 1 where the CU codes a residual
  Bi,        // 1 for bi-predicted PUs
  Qp,        // QpY (int8)
  CuEdges,   // bit 0: CU boundary on the pixel's left, bit 1: on its top
  PuEdges,   // same for prediction units (CU boundaries included)
  TuEdges,   // same for transform units (CU boundaries included)
};

bool map_kind_from_name(const std::string& name, MapKind& kind);
const char* const* map_names();  // null-terminated list, in MapKind order
bool map_is_signed(MapKind kind);
bool map_is_edges(MapKind kind);

// Per-4x4-block values of a map; `out` holds gw*gh bytes (int8 maps are stored as bytes).
void block_map(const PriorsView& p, MapKind kind, int log2_ctb, uint8_t* out);

// Nearest-block sampling at the output geometry.
void rasterize_nearest(const uint8_t* grid, int gw, int gh, const Geometry& g, uint8_t* out);

// Boundary bits at the output geometry: an output pixel carries a bit when a block
// boundary of that orientation starts inside the samples it covers.
void rasterize_edges(const uint8_t* grid, int gw, int gh, const Geometry& g, uint8_t* out);

}  // namespace bitsr::raster
