// Top-level parse-only decoder: takes NAL units in decoding order, keeps parameter sets
// and the DPB, parses every slice down to the residual syntax, and hands out finished
// pictures in decoding order and in output order.
#pragma once
#include <array>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include "hevc/dpb.h"
#include "hevc/limits.h"
#include "hevc/picture.h"
#include "hevc/ps.h"
#include "hevc/slice_data.h"
#include "hevc/slice_header.h"

namespace bitsr {

struct DecoderOptions {
  bool strict = false;    // raise on the first error instead of concealing
  bool parse_ctu = true;  // parse slice data (false: picture-level information only)
  // Worker threads that parse slice data (frame_threads.h); 0: in the calling thread.
  // Results, warnings and errors are the same whatever the number.
  int threads = 0;
  // Pictures handed to the workers and not yet out in `decoded` (memory: their slice data
  // and priors); the calling thread waits when this many are in flight. 0: 3 * threads + 4
  // (a window over a GOP: pictures differ in cost, and workers should not wait on one).
  int max_in_flight = 0;
  // With two or more workers, WPP slice segments of at least this many bytes have their CTB
  // rows parsed by several workers (wpp_rows.h); smaller ones cost more to share than to parse.
  // -1: never. (Tests set 0 so that every WPP segment goes through it.)
  int64_t wpp_min_bytes = 4096;
  // The same for segments of P and B slices; -1 (the default): never. Their pictures have
  // other pictures beside them to parse, which is cheaper than sharing out rows two CTBs apart
  // (2 threads, 2t/1t: bbb1080_50f 1.63 -> 1.87, long 7.5 Mbit/s 1.84 -> 1.96); an intra
  // picture is what the next pictures follow, and the bulk of a short stream.
  int64_t wpp_inter_min_bytes = -1;
  // The workers run at the lowest scheduling priority (SCHED_IDLE), on threads of their own:
  // beside another decoder (bitsr.open's FFmpeg threads) they take only the CPU time it
  // leaves, and the caller parses what they have not reached when it needs it.
  bool background = false;
  Limits limits;
};

struct PictureJob;  // a picture's slice data and parsing state (frame_threads.h)
struct SliceJob;
struct SliceOutcome;
class FrameThreads;

class Decoder : private ParamSetLookup {
 public:
  explicit Decoder(const DecoderOptions& opts = DecoderOptions());
  ~Decoder();

  // One NAL unit without start code or length prefix. `offset` is its byte position in the
  // input, for error messages.
  void push_nal(const uint8_t* data, size_t size, int64_t offset = -1);
  void push_annexb(const uint8_t* data, size_t size, int64_t base_offset = 0);
  void push_length_prefixed(const uint8_t* data, size_t size, int length_size, int64_t base_offset = 0);
  // Part of an Annex B byte stream read in chunks: NAL units are processed once the next
  // start code is seen; `final` processes the rest. Memory stays bounded by the largest NAL.
  // With `yield_pictures` > 0, processing stops as soon as that many finished pictures wait
  // in `decoded` and the call returns true: pop them, then call again with no data (and the
  // same `final`) until it returns false. A chunk full of tiny pictures then never needs
  // more than a few pictures in memory.
  bool push_annexb_chunk(const uint8_t* data, size_t size, bool final, size_t yield_pictures = 0);
  // hvcC record from MP4/MKV extradata; returns the NAL length size.
  int push_hvcc(const uint8_t* data, size_t size);
  // Marks the end of an access unit (a container packet): finishes the current picture.
  void end_access_unit();
  // End of input: finishes the current picture and outputs everything left; with `wait`
  // false, as far as the workers have parsed (the rest comes with sync() or flush()).
  void flush(bool wait = true);
  // Outputs the next picture in output order even if the DPB would still hold it
  // (used to follow a decoder that outputs earlier than the bumping process requires).
  bool bump_one();
  // Waits for the workers: every finished picture is in `decoded` (and `output`) after it.
  void sync() { retire(true); }

  // With worker threads, pictures (and warnings) come out here once parsed, in the order
  // one thread would give them; flush() and bump_one() wait for the workers.
  std::deque<PicturePtr> decoded;  // finished pictures, decoding order
  std::deque<PicturePtr> output;   // pictures in output order (PicOutputFlag = 1)

  int64_t num_nals() const { return nal_index_ + 1; }  // NAL units seen so far
  // Pictures begun so far (the next picture's decode_index): those begun while a packet was
  // pushed are that packet's, even when they come out of `decoded` later.
  int64_t num_pictures_started() const { return decode_count_; }
  int num_threads() const;
  int max_in_flight() const { return max_in_flight_; }
  int64_t num_row_segments() const;  // slice segments whose CTB rows were parsed in parallel
  int64_t num_skipped_pictures() const { return skipped_pictures_; }
  const std::vector<std::string>& warnings() const { return warnings_; }
  std::shared_ptr<const Sps> active_sps() const { return active_sps_; }

 private:
  ActiveParams activate(int pps_id) override;
  void handle_slice(const uint8_t* data, size_t size, int nal_type, int temporal_id);
  bool begin_picture(const SliceHeader& sh, const ActiveParams& params, int nal_type, int temporal_id);
  void finish_picture();
  PicturePtr generate_missing(int32_t poc, bool long_term, const ActiveParams& params);
  void report(const std::exception& e, const char* what);
  void warn(std::string msg);
  void slice_data_failed();
  void check_queue_limit(const Sps& sps) const;
  // Hands out, in order, what is ready (warnings, errors, pictures): all of it with
  // `wait_all`, else as much as is done, waiting only while `max_in_flight_` pictures are in
  // flight. Rethrows an error a worker kept for the caller.
  void retire(bool wait_all);
  void queue_output(std::deque<PicturePtr>& pics);
  // Before an error is thrown with workers: parses the current picture's slices here, so an
  // error in them comes first, as it would with one thread.
  void settle_current();
  void append_warning(std::string msg);
  void add_error(Picture& pic, std::string msg);  // Picture::errors, capped
  // A slice's outcome handed out: its warning and picture error, or its error rethrown.
  void emit(SliceOutcome& o, Picture& pic);

  // Something to hand out in order: a warning, an error of a picture, the outcome of a
  // slice segment's data, a finished picture, a picture in output order.
  struct Item {
    enum Kind : uint8_t { kWarning, kPicError, kSlice, kDecoded, kOutput } kind;
    std::string text;
    PicturePtr pic;
    std::shared_ptr<PictureJob> job;
    SliceJob* slice = nullptr;
  };
  bool ready(const Item& it) const;
  std::deque<Item> items_;
  std::shared_ptr<PictureJob> job_;                    // the picture in progress
  std::vector<std::vector<PendingPu>> spare_pending_;  // buffers of finished pictures, reused
  void recycle(PictureJob& job);
  int in_flight_ = 0;
  int max_in_flight_ = 0;

  DecoderOptions opts_;
  std::array<std::shared_ptr<const Vps>, 16> vps_{};
  std::array<std::shared_ptr<const Sps>, 16> sps_{};
  std::array<std::shared_ptr<const Pps>, 64> pps_{};
  std::array<std::vector<uint8_t>, 16> sps_raw_;
  std::array<std::vector<uint8_t>, 64> pps_raw_;
  std::shared_ptr<const Sps> active_sps_;
  // scan maps cache for the last (sps, pps) pair
  std::shared_ptr<const Sps> maps_sps_;
  std::shared_ptr<const Pps> maps_pps_;
  std::shared_ptr<const ScanMaps> maps_;

  Dpb dpb_;
  PicturePtr cur_;
  RefPicSet cur_rps_;
  SliceHeader cur_sh_;  // last independent slice segment header of the picture
  bool have_cur_sh_ = false;
  bool skipping_ = false;      // the current picture is skipped (RASL after CRA start, ...)
  bool first_picture_ = true;  // no picture decoded yet in the bitstream
  bool after_eos_ = false;
  bool seen_irap_ = false;
  bool assoc_irap_no_rasl_ = false;
  int32_t prev_tid0_poc_ = 0;
  int cvs_index_ = -1;
  int64_t decode_count_ = 0;
  int64_t nal_index_ = -1;
  int64_t nal_offset_ = -1;
  int64_t skipped_pictures_ = 0;
  size_t rec_hint_ = 0;  // PU records of the last picture, to size the next one's buffer
  std::vector<std::string> warnings_;
  std::vector<uint8_t> rbsp_;
  std::vector<uint8_t> pending_;  // unprocessed tail of an Annex B stream
  int64_t pending_offset_ = 0;    // stream offset of pending_[0]
  size_t pending_scanned_ = 0;    // no start code begins in pending_[pending_begin_ + 1, this)
  size_t pending_cut_ = 0;        // last start code found in pending_ (0: none)
  size_t pending_begin_ = 0;      // unprocessed data starts here (after an early stop)
  std::vector<uint32_t> epb_;
  std::shared_ptr<FrameThreads> pool_;  // stopped by the destructor, before the rest goes
};

}  // namespace bitsr
