// Frame-level parallel parsing. The decoder's own thread reads NAL units, parameter sets,
// slice headers, the DPB and output order, in order, and hands each finished picture's slice
// data to a pool of workers. A picture's CTU syntax depends on nothing outside the picture,
// so workers parse several pictures at once. The motion vectors (merge, AMVP, TMVP) read the
// collocated picture's motion, in the same CTB row only, so they are derived either
//  - as the picture is parsed, CTB row by CTB row behind the collocated picture's published
//    progress (Picture::motion), when every earlier picture is being derived or done: on a
//    low-delay stream two threads so parse consecutive pictures side by side; a thread that
//    would wait long (while other work waits) leaves the rest for later, or
//  - afterwards from the PUs the parse left pending (slice_data.h, PendingPu), in decoding
//    order, several pictures at once, once the collocated picture is derived or is being
//    derived from parsed motion, so that no derivation holds a thread for long.
#pragma once
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "hevc/dpb.h"
#include "hevc/slice_data.h"
#include "hevc/thread_park.h"

namespace bitsr {

// What became of one slice segment's data: a concealed error (`warning` for the decoder's
// list, `error` for Picture::errors) or an error the caller must see (`fatal`).
struct SliceOutcome {
  std::string warning, error;
  std::exception_ptr fatal;
};

// One slice segment, with what it needs kept (copied when parsed on a worker).
struct SliceJob {
  SliceHeader sh;
  RefList lists[2];
  PicturePtr col;             // keeps the collocated picture alive
  std::vector<uint8_t> data;  // a worker's copy of the slice data
  SliceDataInput in;          // points into the fields above
  PendingRange range;         // its PUs waiting for motion derivation
  int64_t nal_index = -1, offset = -1;
  bool parsed = false;  // parsed in the decoder's thread (no workers, or before an error)
  SliceOutcome outcome;
};

struct PictureJob {
  PicturePtr pic;
  std::unique_ptr<PictureState> state;
  std::vector<std::unique_ptr<SliceJob>> slices;
  std::vector<SliceOutcome> late;  // errors of the motion derivation, in slice order
  std::vector<PendingPu> spare;    // PictureState::pending once done, for the next picture
  bool strict = false;
  bool submitted = false;  // handed to the pool (set by the decoder's thread)
  // scheduling, guarded by the pool's mutex; a done job is still `deriving`
  bool parsed = false, deriving = false, done = false;
};

// Parses one slice segment's data into the picture, turning errors into its outcome.
void parse_slice(PictureState& st, SliceJob& s, bool strict);
// Every slice segment of a picture not parsed yet: on a worker, or in the decoder's thread
// before the picture is handed over (`mark_parsed`: SliceJob::parsed is the decoder
// thread's to write; workers report through PictureJob::done). `derive_now`: every earlier
// picture is done, so the motion can be derived as it is parsed (SliceDataInput).
void parse_picture(PictureJob& job, bool mark_parsed = false, bool derive_now = false);
// Motion derivation of every slice segment, then finish_slice_data; frees the parsing state.
// `concurrent`: later pictures may be derived at the same time, reading this one's progress.
void derive_picture(PictureJob& job, bool concurrent = false);

// Workers also take rows of a WPP slice segment that another thread is parsing
// (RowHelpers, wpp_rows.h). Offered rows go before new pictures: the picture parsed by rows
// is one that the derivation, and so the output, waits for.
class FrameThreads : public RowHelpers {
 public:
  // Starts `threads` worker loops on parked threads (thread_park.h), or with `background`
  // on threads of their own at the lowest priority (run_idle); each loop holds the pool.
  static std::shared_ptr<FrameThreads> start(int threads, bool background = false);
  // Waits for the tasks running and drops the others. The loops return to the park on their
  // own, when they next wake: nobody waits for a sleeping thread to wake up (tens of
  // microseconds on a VM, as long as parsing a small picture takes).
  void stop();
  // The stream has ended: no picture comes after those submitted. Idle workers poll for a
  // while before they sleep, so that stop() soon after wakes nobody.
  void drain();
  FrameThreads(const FrameThreads&) = delete;
  FrameThreads& operator=(const FrameThreads&) = delete;

  void submit(std::shared_ptr<PictureJob> job);
  bool is_done(const PictureJob& job);
  void wait(const PictureJob& job);  // runs tasks meanwhile
  int size() const { return workers_; }
  // the workers, and the decoder's thread, which runs tasks while it waits (wait())
  int helpers() const override { return size() + 1; }
  int64_t row_segments() const { return row_segments_.load(); }
  void offer(const std::shared_ptr<std::function<void()>>& task, int copies) override;
  // (always, for the decoder's thread: it has NAL units to read)
  bool has_work() const override;
  // True in a child forked after the threads started (a DataLoader worker, multiprocessing):
  // it has a copy of the pool but not its threads.
  bool forked() const;

 private:
  FrameThreads() = default;
  void worker();
  // Runs one task (a derivation, an offered row task, a picture to parse) with `l` released;
  // false when there is none.
  bool run_one(std::unique_lock<std::mutex>& l);
  bool derivable(size_t i) const;        // jobs_[i] may begin its motion derivation (mu_ held)
  bool deriving_before(size_t i) const;  // every job before jobs_[i] is being derived or done
  void mark_done(PictureJob& job);       // then drops the done jobs at the front and wakes all
  void task_ended();                     // a task of run_one returned (mu_ held)
  size_t next_derivation() const;        // the first job not being derived (mu_ held)
  bool runnable() const;                 // run_one would run a task (mu_ held)
  void wake(bool all);                   // notifies work_cv_ and polling workers
  // Polls for kPollUs (mu_ held, released meanwhile) for work or stop(); true if it came.
  bool poll(std::unique_lock<std::mutex>& l);
  // The collocated pictures of `job` (of its slices with PUs pending) are derived or are
  // being derived from parsed motion.
  static bool col_ready(const PictureJob& job, bool pending_only = true);

  std::mutex mu_;
  std::condition_variable work_cv_;                           // new work, a picture done, stop
  std::deque<std::shared_ptr<PictureJob>> jobs_;              // submitted and not done, in decoding order
  size_t next_parse_ = 0;                                     // jobs_[next_parse_] is the next to parse
  std::deque<std::shared_ptr<std::function<void()>>> helps_;  // offered copies of row tasks
  int workers_ = 0;                                           // worker loops started on parked threads (thread_park.h)
  std::vector<std::shared_ptr<ParkTicket>> tickets_;          // theirs
  int running_ = 0;                                           // tasks running (mu_ released)
  int sleeping_ = 0;                                          // workers waiting on work_cv_
  bool decoder_sleeping_ = false;                             // the decoder's thread waits on work_cv_
  std::condition_variable idle_cv_;                           // running_ fell to 0 after stop_
  bool stop_ = false;
  bool draining_ = false;
  std::atomic<bool> stopping_{false};  // stop_, for polling workers
  std::atomic<int> wakes_{0};          // counts wake()s and finished jobs, for polling workers
  static constexpr int kPollUs = 300;
  std::atomic<int64_t> row_segments_{0};  // segments parsed by rows
  std::atomic<int> waiting_work_{0};      // pictures not begun and offered tasks (count_work)
  void count_work() {
    waiting_work_.store((int)(jobs_.size() - next_parse_ + helps_.size()), std::memory_order_relaxed);
  }
  int pid_ = 0;  // of the process that started the threads
};

}  // namespace bitsr
