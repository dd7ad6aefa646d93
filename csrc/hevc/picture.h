// A decoded picture's priors: everything the schema exports, at 4x4 luma granularity, in
// row-major [Gh][Gw] arrays that are handed to NumPy without copying. The same arrays
// serve as the motion field that later pictures read for merge/AMVP/TMVP.
#pragma once
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "hevc/ps.h"
#include "hevc/slice_header.h"

namespace bitsr {

// Uninitialised heap array: priors are written block by block, and undecoded areas are
// filled explicitly at the end of a picture, so zero-filling would be wasted work.
template <class T>
class Buf {
 public:
  Buf() = default;
  explicit Buf(size_t n) { reset(n); }
  void reset(size_t n) {
    p_.reset(n ? static_cast<T*>(std::malloc(n * sizeof(T))) : nullptr);
    if (n && !p_) throw std::bad_alloc();
    n_ = n;
    // BITSR_POISON=1 fills new buffers with a pattern so reads of unwritten priors show up
    static const bool poison = std::getenv("BITSR_POISON") != nullptr;
    if (poison && n) std::memset(p_.get(), 0xA5, n * sizeof(T));
  }
  T* data() { return p_.get(); }
  const T* data() const { return p_.get(); }
  T& operator[](size_t i) { return p_.get()[i]; }
  const T& operator[](size_t i) const { return p_.get()[i]; }
  size_t size() const { return n_; }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> p_;
  size_t n_ = 0;
};

enum PredModeValue : int8_t { PM_INTER = 0, PM_INTRA = 1, PM_SKIP = 2 };
constexpr int32_t kNoRefPoc = INT32_MIN;

struct Priors {
  int gw = 0, gh = 0;  // grid of 4x4 blocks over the coded picture
  Buf<int8_t> pred_mode;
  Buf<uint8_t> cu_log2, part_mode, merge_flag, inter_dir;
  Buf<int16_t> mv;       // [n][list][x,y]
  Buf<int8_t> ref_idx;   // [n][list]
  Buf<int32_t> ref_poc;  // [n][list]
  Buf<int8_t> qp_y;
  Buf<uint8_t> tu_log2, residual, intra_mode, pcm_flag, transquant_bypass;
  Buf<uint8_t> ref_lt;   // bit l: list l refers to a long-term picture (TMVP needs it)
  static constexpr int kBytesPerBlock = 30;  // sum of the element sizes above, per 4x4 block
  void allocate(int w4, int h4) {
    gw = w4;
    gh = h4;
    size_t n = (size_t)w4 * h4;
    pred_mode.reset(n);
    cu_log2.reset(n);
    part_mode.reset(n);
    merge_flag.reset(n);
    inter_dir.reset(n);
    mv.reset(n * 4);
    ref_idx.reset(n * 2);
    ref_poc.reset(n * 2);
    qp_y.reset(n);
    tu_log2.reset(n);
    residual.reset(n);
    intra_mode.reset(n);
    pcm_flag.reset(n);
    transquant_bypass.reset(n);
    ref_lt.reset(n);
  }
};

// Per-slice reference lists, kept with the picture for reporting and for the exact-MC
// check (which needs weights).
struct SliceInfo {
  int slice_segment_address = 0;
  bool dependent = false;
  int slice_type = SLICE_I;
  int slice_qp = 26;
  int num_ref_idx[2] = {0, 0};
  int32_t ref_poc[2][16] = {};
  uint8_t ref_is_lt[2][16] = {};
  bool temporal_mvp = false;
  bool collocated_from_l0 = true;
  int collocated_ref_idx = 0;
  int max_num_merge_cand = 5;
  bool has_weights = false;
  PredWeightTable pwt;
  bool deblocking_disabled = false;
  bool sao_luma = false, sao_chroma = false;
  size_t nal_index = 0;
};

struct Picture {
  // identification
  int32_t poc = 0;
  int nal_type = 0;
  int slice_type = SLICE_I;  // of the first slice segment
  int temporal_id = 0;
  int64_t decode_index = 0;  // among decoded (not skipped) pictures
  int cvs_index = 0;
  bool pic_output_flag = true;  // PicOutputFlag
  bool no_rasl_output_flag = false;
  bool generated = false;       // stands in for a missing reference
  int num_slice_segments = 0;
  std::shared_ptr<const Sps> sps;
  std::shared_ptr<const Pps> pps;
  std::vector<SliceInfo> slices;
  Priors pr;
  // concealment: CTBs (raster order) whose slice data was decoded without error
  std::vector<uint8_t> ctb_ok;
  int num_ctb_ok = 0;
  std::vector<std::string> errors;

  // DPB state
  bool is_reference = false, is_long_term = false;
  bool needed_for_output = false;
  int latency_count = 0;
};

using PicturePtr = std::shared_ptr<Picture>;

}  // namespace bitsr
