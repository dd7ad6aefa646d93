// A decoded picture's priors: everything the schema exports, at 4x4 luma granularity, in
// row-major [Gh][Gw] arrays that are handed to NumPy without copying. The same arrays
// serve as the motion field that later pictures read for merge/AMVP/TMVP.
#pragma once
#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "hevc/ps.h"
#include "hevc/slice_header.h"
#include "hevc/spin.h"

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
  PriorStorage(PriorStorage&& o) noexcept : p_(o.p_), bytes_(o.bytes_) { o.p_ = nullptr, o.bytes_ = 0; }
  PriorStorage& operator=(PriorStorage&& o) noexcept {
    std::swap(p_, o.p_);
    std::swap(bytes_, o.bytes_);
    return *this;
  }
  ~PriorStorage() { release(); }
  void* allocate(size_t bytes);
  void release();
  void* data() const { return p_; }
  // Before a thread writes the buffer: swaps it, contents not kept, for a free one this
  // thread wrote last (still in its core's cache), if any. True when swapped.
  bool claim();

 private:
  void poison();
  void* p_ = nullptr;
  size_t bytes_ = 0;
  std::thread::id owner_;  // the thread that allocated or claimed it
};

enum PredModeValue : int8_t { PM_INTER = 0, PM_INTRA = 1, PM_SKIP = 2 };
constexpr int32_t kNoRefPoc = INT32_MIN;

// One prediction unit (for intra CUs: one per luma prediction block; for undecoded CTBs:
// one per CTB) with the CU-level fields it inherits. The picture's block grid stores only
// the index of the record covering each 4x4 block, so a 64x64 skip CU costs one record
// and a 4-byte fill instead of a dozen per-block arrays; the schema arrays are
// materialised from the records when someone asks for them.
struct alignas(32) PuRec {  // aligned: a record never straddles two cache lines
  int16_t mv[4];            // [list][x, y], quarter luma samples
  int8_t ref_idx[2];
  uint8_t inter_dir;  // bit l: list l used
  uint8_t ref_lt;     // bit l: list l refers to a long-term picture
  int8_t pred_mode;   // PredModeValue
  uint8_t cu_log2;
  uint8_t part_mode;
  uint8_t intra_mode;  // IntraPredModeY; 255 inter/skip; 1 (DC) for PCM
  int8_t qp_y;
  uint8_t merge_flag, residual, pcm_flag, transquant_bypass;
  uint8_t has_tt;      // tu_log2 comes from the TU grid rather than cu_log2
  uint16_t slice_idx;  // index into Picture::slices (reference POCs for this PU)
  uint16_t x4, y4;     // top-left block
  uint8_t w4, h4;      // size in blocks
  uint8_t pad_[2];
};
static_assert(sizeof(PuRec) == 32, "PuRec layout");

// The schema arrays (docs/schema.md), row-major [Gh][Gw] on the 4x4 grid.
struct SchemaArrays {
  Arr<int8_t> pred_mode;
  Arr<uint8_t> cu_log2, part_mode, merge_flag, inter_dir;
  Arr<int16_t> mv;       // [n][list][x,y]
  Arr<int8_t> ref_idx;   // [n][list]
  Arr<int32_t> ref_poc;  // [n][list]
  Arr<int8_t> qp_y;
  Arr<uint8_t> tu_log2, residual, intra_mode, pcm_flag, transquant_bypass;
  PriorStorage storage;
  bool ready = false;
  void allocate(size_t n);
};

struct SliceInfo;

struct Priors {
  int gw = 0, gh = 0;  // grid of 4x4 blocks over the coded picture
  Arr<uint32_t> pu;    // record index of each block
  Arr<uint8_t> tu;     // tu_log2 of blocks inside transform trees
  PuRec* recs = nullptr;
  size_t cap = 0;
  PriorStorage storage, rec_storage;
  SchemaArrays schema;
  // Records written. Counted up by the thread parsing the picture while the threads of later
  // pictures read the fields above (at_col): on a cache line of their own, or each record
  // would take that line from their cores (false sharing: 7% per picture side by side).
  alignas(64) size_t nrec = 0;

  void allocate(int w4, int h4, size_t rec_hint);
  // Called by the thread about to parse the picture, before anything is written: takes
  // buffers that thread wrote last, if the pool has them (PriorStorage::claim).
  void claim();
  // Appends a record; the grid is not touched.
  uint32_t add(const PuRec& r) {
    if (nrec == cap) grow();
    recs[nrec] = r;
    return (uint32_t)nrec++;
  }
  // Record covering block k of a collocated picture whose motion may still be being derived
  // on another thread (MotionProgress): `nrec` may change then, `cap` may not.
  const PuRec& at_col(size_t k) const {
    const uint32_t i = pu[k];
    if (i >= cap) unwritten_block();
    return recs[i];
  }
  // Record covering block k. Reading a block no record was written for means the caller's
  // availability logic is wrong; that must not become an out-of-bounds read.
  const PuRec& at(size_t k) const {
    const uint32_t i = pu[k];
    if (i >= nrec) unwritten_block();
    return recs[i];
  }
  // Room for n records (parsing by rows writes into ranges of it), and back to about what
  // is used afterwards.
  void reserve(size_t n);
  void shrink();
  // Builds the schema arrays from the records (once).
  void materialize(const std::vector<SliceInfo>& slices);

 private:
  void grow();
  void reallocate(size_t ncap);
  void bind_grids(bool allocate);
  [[noreturn]] static void unwritten_block();
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

// How far a picture's motion is final, for pictures that read it as their collocated
// picture while it is still being derived on another thread (frame_threads.h): the motion
// of every CTB with a raster address below `ctbs` is final, and so are its records.
// INT_MAX: the whole picture, concealment included.
class MotionProgress {
 public:
  int get() const { return ctbs_.load(std::memory_order_acquire); }
  void reset() {
    ctbs_.store(0, std::memory_order_relaxed);
    state_.store(kIdle, std::memory_order_relaxed);
  }
  void publish(int n) {
    ctbs_.store(n);  // seq_cst with waiters_ below: a waiter either sees n or is notified
    if (waiters_.load()) {
      std::lock_guard<std::mutex> g(mu_);
      cv_.notify_all();
    }
  }
  // Who moves it on: nobody yet (a picture to be parsed, or one parsed by rows), a thread that
  // parses and derives the picture (as fast as parsing goes), or a thread that derives its
  // parsed motion (fast).
  enum State { kIdle, kParsing, kDeriving };
  State state() const { return state_.load(std::memory_order_relaxed); }
  void set_state(State s) { state_.store(s, std::memory_order_relaxed); }
  bool live() const { return state() != kIdle; }
  // Waits until at least `need` CTBs are final; returns how many are. Spins briefly first:
  // pictures parsed side by side wait a CTB row's time (microseconds) for each other, which
  // is less than a sleep and a wake-up cost in the kernel.
  int wait(int need) {
    int n = get();
    if (n >= need) return n;
    int spun = 0;
    if (spin(need, kSpinUs, n, spun)) return n;
    std::unique_lock<std::mutex> l(mu_);
    waiters_.fetch_add(1);
    cv_.wait(l, [&] { return (n = ctbs_.load()) >= need; });
    waiters_.fetch_sub(1);
    return n;
  }
  // The same, but only while live and for at most `us` microseconds; may return less.
  // Reports the microseconds waited.
  int wait_live(int need, int us, int& waited) {
    int n = get();
    if (n >= need || !live() || us <= 0) return n;
    if (spin(need, std::min(us, kSpinUs), n, waited) || !live() || us <= kSpinUs) return n;
    us -= kSpinUs;
    const auto t0 = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> l(mu_);
    waiters_.fetch_add(1);
    cv_.wait_for(l, std::chrono::microseconds(us), [&] { return (n = ctbs_.load()) >= need || !live(); });
    waiters_.fetch_sub(1);
    waited += (int)std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    return n;
  }

 private:
  static constexpr int kSpinUs = 20;
  // Polls for up to `us` microseconds (added to `waited`); true once `need` CTBs are final.
  bool spin(int need, int us, int& n, int& waited) {
    const auto t0 = std::chrono::steady_clock::now();
    spin_until([&] { return (n = get()) >= need || !live(); }, t0 + std::chrono::microseconds(us));
    waited += (int)std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    return n >= need;
  }

  std::atomic<int> ctbs_{INT_MAX};
  std::atomic<State> state_{kIdle};
  std::atomic<int> waiters_{0};
  std::mutex mu_;
  std::condition_variable cv_;
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
  bool generated = false;  // stands in for a missing reference
  int num_slice_segments = 0;
  std::shared_ptr<const Sps> sps;
  std::shared_ptr<const Pps> pps;
  std::vector<SliceInfo> slices;
  Priors pr;
  // concealment: CTBs (raster order) whose slice data was decoded without error
  std::vector<uint8_t> ctb_ok;
  int num_ctb_ok = 0;
  // Read through the const pointers of later pictures, spinning at times: on a line of its own.
  alignas(64) mutable MotionProgress motion;
  std::vector<std::string> errors;

  // DPB state
  bool is_reference = false, is_long_term = false;
  bool needed_for_output = false;
  int latency_count = 0;
};

using PicturePtr = std::shared_ptr<Picture>;

}  // namespace bitsr
