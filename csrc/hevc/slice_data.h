// slice_segment_data() (7.3.8): CTU syntax parsed with CABAC, priors written into the
// picture's arrays. State that outlives one slice segment (WPP and dependent-slice context
// storage, slice addresses per CTB) lives in PictureState.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "hevc/dpb.h"
#include "hevc/picture.h"

namespace bitsr {

// Threads that can take a share of one slice segment's work: parse_rows() offers a task to
// idle ones (frame_threads.h). A copy may run late, after the work is done, or never.
class RowHelpers {
 public:
  virtual ~RowHelpers() = default;
  virtual int helpers() const = 0;  // threads, the caller's included
  virtual void offer(const std::shared_ptr<std::function<void()>>& task, int copies) = 0;
  // Work is waiting for a thread (a picture to parse, an offered task); a hint.
  virtual bool has_work() const { return false; }
};

struct SliceDataInput {
  const SliceHeader* sh = nullptr;
  const RefList* lists = nullptr;  // [2]
  const Picture* col_pic = nullptr;
  const uint8_t* data = nullptr;  // RBSP bytes of the slice data
  size_t size = 0;
  std::vector<size_t> entry_points;  // start of substreams 1.. in `data`
  int slice_idx = 0;                 // of this segment in Picture::slices
  bool derive_now = false;           // derive each PU's motion as it is parsed (PendingRange)
  // Parses the CTB rows of a WPP slice segment on several threads (wpp_rows.cpp); never
  // together with derive_now.
  RowHelpers* helpers = nullptr;
  int64_t rows_min_bytes = -1;        // DecoderOptions::wpp_min_bytes
  int64_t rows_inter_min_bytes = -1;  // DecoderOptions::wpp_inter_min_bytes
};

struct PictureStateImpl;

// Motion syntax of one prediction unit as parsed. Parsing needs nothing from other pictures;
// the motion vectors are derived afterwards, in decoding order (derive_slice_motion), because
// merge, AMVP and TMVP read the motion of earlier PUs and of the collocated picture. Workers
// can so parse a picture before its collocated picture's motion is final (frame_threads.h).
struct PendingPu {
  uint32_t rec;    // record written when parsed, motion fields still empty
  int32_t ctb_rs;  // CTB containing it
  uint16_t x_cb, y_cb, x_pb, y_pb;
  uint8_t n_cb, w, h, part_idx;
  uint8_t part_mode, merge, merge_idx, pad_;
  int8_t ref_idx[2];  // AMVP: -1 where the list is unused
  uint8_t mvp[2];
  int32_t mvd[4];  // [list][x, y]
};

// The PUs one slice segment's data added to PictureState::pending.
struct PendingRange {
  size_t begin = 0, end = 0;
  int slice_addr_rs = 0;  // SliceAddrRs of its slice
  // Parsing in the decoder's thread (SliceDataInput::derive_now) derives each PU as it is
  // parsed and leaves nothing pending, unless a derivation fails: from that PU on, the
  // slice's PUs wait for the end of the picture like a worker's.
  bool derive_failed = false;
};

struct PictureState {
  // rec_hint: expected number of PU records (the previous picture's count). full_room: room
  // for as many as the picture can have (max_records) instead, so that they never move and
  // other threads may read them while the picture is still being parsed (MotionProgress).
  PictureState(Picture& pic, const ActiveParams& params, size_t rec_hint, bool full_room = false);
  ~PictureState();
  Picture& pic;
  ActiveParams params;
  std::vector<int32_t> ctb_slice_addr;  // SliceAddrRs of each CTB (raster), -1 until decoded
  std::vector<PendingPu> pending;       // inter PUs parsed, motion not derived yet
  // The derivation publishes its progress (Picture::motion) as it goes: later pictures may
  // be derived at the same time (frame_threads.h). `published`: CTBs published so far.
  bool publish = false;
  int published = 0;
  int waited_us = 0;  // parsing this picture, waiting for the collocated picture's motion
  // Records can never move: the buffer holds the most a picture can have.
  bool records_fixed() const;
  static size_t max_records(const Sps& sps);
  std::unique_ptr<PictureStateImpl> impl;
};

// Parses one slice segment's data. Throws BitstreamError on malformed data; CTBs decoded
// before the error stay valid and are recorded in pic.ctb_ok. `range` receives the inter PUs
// whose motion derive_slice_motion must derive, also when it throws.
void decode_slice_data(PictureState& st, const SliceDataInput& in, PendingRange& range);

// Derives the motion of the PUs of `range` in CTBs that were parsed whole (pic.ctb_ok), in
// decoding order; the collocated picture's motion must be final. On an error, `failed_ctb`
// is the CTB (raster address) of the PU it stopped at.
void derive_slice_motion(PictureState& st, const SliceDataInput& in, const PendingRange& range, int& failed_ctb);

// After decode_slice_data threw: CTBs the failed segment started but did not finish hold
// partial priors, so they become unavailable to later segments of the picture (they are
// concealed with the rest at its end), and a following dependent slice segment, whose
// contexts would come from the broken one, is refused (conceal.cpp).
void abandon_slice_data(PictureState& st);

// Ends a picture's slice data: fills the CTBs that no slice decoded with "unknown" priors
// (intra, no motion, qp of the picture) so the arrays are fully defined, completes the
// collocated motion field and marks the whole picture as done for pictures waiting on it.
void finish_slice_data(PictureState& st);

// Writes "intra, no motion" everywhere (pictures generated for missing references, or
// when CTU parsing is switched off).
void fill_intra(Picture& pic, int qp);

}  // namespace bitsr
