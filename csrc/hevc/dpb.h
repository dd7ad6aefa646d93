// Decoded picture buffer: POC derivation (8.3.1), reference picture set and marking (8.3.2),
// generation of unavailable references (8.3.3), reference list construction (8.3.4) and the
// output ("bumping") process of C.5.2.
#pragma once
#include <deque>
#include <vector>

#include "hevc/picture.h"
#include "hevc/slice_header.h"

namespace bitsr {

struct RefPicSet {
  std::vector<PicturePtr> st_curr_before, st_curr_after, lt_curr;  // null entries: missing
  std::vector<int32_t> poc_st_curr_before, poc_st_curr_after, poc_lt_curr;
  std::vector<uint8_t> lt_curr_msb;  // delta_poc_msb_present_flag of LtCurr entries
};

struct RefList {
  int n = 0;
  Picture* pic[16] = {};
  int32_t poc[16] = {};
  uint8_t is_lt[16] = {};
};

class Dpb {
 public:
  std::vector<PicturePtr> pics;  // excludes the current picture until it is stored

  void clear() { pics.clear(); }

  // 8.3.2: derives the RPS of `cur` (whose POC is set), marks DPB pictures, and returns the
  // current lists. Missing pictures of StCurrBefore/After/LtCurr come back as nullptr.
  RefPicSet apply_rps(const SliceHeader& sh, const Sps& sps, const Picture& cur, bool irap_no_rasl);

  // 8.3.4 for one slice. Missing references are replaced by `fill` (generated pictures).
  static void build_lists(const SliceHeader& sh, const RefPicSet& rps, RefList lists[2]);

  // C.5.2.2, first part: before decoding the current picture.
  void output_before_decode(const Sps& sps, bool irap_no_rasl, bool first_picture, bool no_output_of_prior_pics,
                            std::deque<PicturePtr>& out);
  // C.5.2.3: after the current picture is stored; "additional bumping".
  void output_after_store(const Sps& sps, std::deque<PicturePtr>& out);
  // Outputs every picture still waiting, in POC order (end of stream, EOS).
  void flush(std::deque<PicturePtr>& out);
  // One bumping step (C.5.2.4); returns false if nothing waits for output.
  bool bump(std::deque<PicturePtr>& out);
  void remove_unused();
  int num_waiting() const;
};

}  // namespace bitsr
