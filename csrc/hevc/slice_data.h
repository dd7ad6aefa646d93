// slice_segment_data() (7.3.8): CTU syntax parsed with CABAC, priors written into the
// picture's arrays. State that outlives one slice segment (WPP and dependent-slice context
// storage, slice addresses per CTB) lives in PictureState.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "hevc/dpb.h"
#include "hevc/picture.h"

namespace bitsr {

struct SliceDataInput {
  const SliceHeader* sh = nullptr;
  const RefList* lists = nullptr;  // [2]
  const Picture* col_pic = nullptr;
  const uint8_t* data = nullptr;  // RBSP bytes of the slice data
  size_t size = 0;
  std::vector<size_t> entry_points;  // start of substreams 1.. in `data`
};

struct PictureStateImpl;

struct PictureState {
  // rec_hint: expected number of PU records (the previous picture's count)
  PictureState(Picture& pic, const ActiveParams& params, size_t rec_hint);
  ~PictureState();
  Picture& pic;
  ActiveParams params;
  std::vector<int32_t> ctb_slice_addr;  // SliceAddrRs of each CTB (raster), -1 until decoded
  std::unique_ptr<PictureStateImpl> impl;
};

// Parses one slice segment's data. Throws BitstreamError on malformed data; CTBs decoded
// before the error stay valid and are recorded in pic.ctb_ok.
void decode_slice_data(PictureState& st, const SliceDataInput& in);

// Fills the CTBs that no slice decoded with "unknown" priors (intra, no motion, qp of
// the picture) so the arrays are fully defined.
void conceal_missing_ctbs(PictureState& st);

// Writes "intra, no motion" everywhere (pictures generated for missing references, or
// when CTU parsing is switched off).
void fill_intra(Picture& pic, int qp);

}  // namespace bitsr
