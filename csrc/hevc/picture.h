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
#include <type_traits>
#include <vector>

#include "hevc/ps.h"
#include "hevc/slice_header.h"

namespace bitsr {

// A typed view into a picture's prior storage.
template <class T>
struct Arr {
  T* p = nullptr;
  size_t n = 0;
  T* data() { return p; }
  const T* data() const { return p; }
  T& operator[](size_t i) { return p[i]; }
  const T& operator[](size_t i) const { return p[i]; }
  size_t size() const { return n; }
};

// One uninitialised allocation per picture, recycled through a small process-wide pool:
// a 1080p picture holds ~4 MB of priors, and fresh pages for every picture would cost
// more (page faults, kernel zeroing) than parsing a skip-heavy picture. Priors are written
// block by block and undecoded areas are filled explicitly, so no zero-filling is needed.
class PriorStorage {
 public:
  PriorStorage() = default;
  PriorStorage(const PriorStorage&) = delete;
  PriorStorage& operator=(const PriorStorage&) = delete;
  ~PriorStorage() { release(); }
  void* allocate(size_t bytes);
  void release();

 private:
  void* p_ = nullptr;
  size_t bytes_ = 0;
};

enum PredModeValue : int8_t { PM_INTER = 0, PM_INTRA = 1, PM_SKIP = 2 };
constexpr int32_t kNoRefPoc = INT32_MIN;

struct Priors {
  int gw = 0, gh = 0;  // grid of 4x4 blocks over the coded picture
  Arr<int8_t> pred_mode;
  Arr<uint8_t> cu_log2, part_mode, merge_flag, inter_dir;
  Arr<int16_t> mv;       // [n][list][x,y]
  Arr<int8_t> ref_idx;   // [n][list]
  Arr<int32_t> ref_poc;  // [n][list]
  Arr<int8_t> qp_y;
  Arr<uint8_t> tu_log2, residual, intra_mode, pcm_flag, transquant_bypass;
  Arr<uint8_t> ref_lt;   // bit l: list l refers to a long-term picture (TMVP needs it)
  PriorStorage storage;

  void allocate(int w4, int h4) {
    gw = w4;
    gh = h4;
    const size_t n = (size_t)w4 * h4;
    size_t off = 0;
    auto place = [&](auto& a, size_t count) {
      using T = std::remove_reference_t<decltype(a[0])>;
      off = (off + 63) & ~(size_t)63;
      a.n = count;
      a.p = reinterpret_cast<T*>(off);  // rebased below
      off += count * sizeof(T);
    };
    place(mv, n * 4);
    place(ref_poc, n * 2);
    place(ref_idx, n * 2);
    place(pred_mode, n);
    place(cu_log2, n);
    place(part_mode, n);
    place(merge_flag, n);
    place(inter_dir, n);
    place(qp_y, n);
    place(tu_log2, n);
    place(residual, n);
    place(intra_mode, n);
    place(pcm_flag, n);
    place(transquant_bypass, n);
    place(ref_lt, n);
    char* base = static_cast<char*>(storage.allocate(off));
    auto rebase = [&](auto& a) {
      using T = std::remove_reference_t<decltype(a[0])>;
      a.p = reinterpret_cast<T*>(base + reinterpret_cast<size_t>(a.p));
    };
    rebase(mv);
    rebase(ref_poc);
    rebase(ref_idx);
    rebase(pred_mode);
    rebase(cu_log2);
    rebase(part_mode);
    rebase(merge_flag);
    rebase(inter_dir);
    rebase(qp_y);
    rebase(tu_log2);
    rebase(residual);
    rebase(intra_mode);
    rebase(pcm_flag);
    rebase(transquant_bypass);
    rebase(ref_lt);
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
