#include "hevc/frame_threads.h"

#include "common/error.h"
#include "hevc/ps.h"

#include <unistd.h>

namespace bitsr {

namespace {

// A caught exception as an outcome: concealed (BitstreamError, unless strict) or kept for the
// caller. Call from a catch block.
void record(SliceOutcome& out, int64_t nal_index, int64_t offset, bool strict) {
  try {
    throw;
  } catch (BitstreamError& e) {
    e.nal_index = nal_index;
    e.byte_offset = offset;
    if (strict) {
      out.fatal = std::current_exception();
      return;
    }
    out.warning = "NAL " + std::to_string(nal_index) + " at byte " + std::to_string(offset) + ": " + e.what();
    out.error = e.what();
  } catch (StreamError& e) {  // limits and unsupported syntax are never concealed
    e.nal_index = nal_index;
    e.byte_offset = offset;
    out.fatal = std::current_exception();
  } catch (...) {  // std::bad_alloc
    out.fatal = std::current_exception();
  }
}

}  // namespace

void parse_slice(PictureState& st, SliceJob& s, bool strict) {
  try {
    decode_slice_data(st, s.in, s.range);
  } catch (...) {
    abandon_slice_data(st);
    record(s.outcome, s.nal_index, s.offset, strict);
  }
}

void parse_picture(PictureJob& job, bool mark_parsed, bool derive_now) {
  if (!mark_parsed) job.pic->pr.claim();  // a worker: buffers in this core's cache
  for (auto& s : job.slices) {
    if (!s->parsed) {  // (the decoder's thread may have parsed some before an error)
      s->in.derive_now = derive_now;
      parse_slice(*job.state, *s, job.strict);
      // Once a segment leaves PUs pending, the later ones must too: a dependent segment's
      // merge candidates may be among them.
      if (s->range.begin != s->range.end) derive_now = false;
      s->data = std::vector<uint8_t>();   // the bytes are not needed any more
      if (mark_parsed) s->parsed = true;  // never written by a worker: the decoder reads it
    }
    if (s->outcome.fatal) break;  // the caller gets the error
  }
}

void derive_picture(PictureJob& job) {
  PictureState& st = *job.state;
  Picture& pic = st.pic;
  const Sps& sps = *st.params.sps;
  const auto& ts_of = st.params.maps->ctb_rs_to_ts;
  // Every slice, also after one that failed for good (strict mode, a limit): the picture's
  // records stay well formed should the caller go on.
  for (auto& s : job.slices) {
    int failed = -1;
    try {
      derive_slice_motion(st, s->in, s->range, failed);
    } catch (...) {
      // Never seen on a stream the parser accepted; handled as a slice that broke off at
      // that CTB: it and the slice's CTBs after it are concealed.
      SliceOutcome o;
      record(o, s->nal_index, s->offset, job.strict);
      if (failed >= 0)
        for (int rs = 0; rs < sps.PicSizeInCtbsY; ++rs)
          if (pic.ctb_ok[rs] && st.ctb_slice_addr[rs] == s->range.slice_addr_rs && ts_of[rs] >= ts_of[failed]) {
            pic.ctb_ok[rs] = 0;
            pic.num_ctb_ok--;
          }
      job.late.push_back(std::move(o));
    }
  }
  finish_slice_data(st);
  job.spare = std::move(st.pending);
  job.spare.clear();
  job.state.reset();
}

FrameThreads::FrameThreads(int threads) : pid_(getpid()) {
  try {
    for (; workers_ < threads; ++workers_) {
      stopped_.add();
      try {
        // `after` is the last touch: once stop_all() sees it (it takes the latch's mutex after
        // done() unlocks it), `this` may be gone; the parked thread touches nothing of it after.
        run_parked([this] { worker(); }, [this] { stopped_.done(); });
      } catch (...) {
        stopped_.done();
        throw;
      }
    }
  } catch (...) {  // no thread could be made: stop the loops started
    stop_all();
    throw;
  }
}

void FrameThreads::stop_all() {
  {
    std::lock_guard<std::mutex> g(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  stopped_.wait();
}

bool FrameThreads::forked() const { return getpid() != pid_; }

FrameThreads::~FrameThreads() { stop_all(); }

void FrameThreads::submit(std::shared_ptr<PictureJob> job) {
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.push_back(std::move(job));
  }
  work_cv_.notify_one();
}

void FrameThreads::offer(const std::shared_ptr<std::function<void()>>& task, int copies) {
  row_segments_.fetch_add(1);
  if (copies <= 0) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (int i = 0; i < copies; ++i) helps_.push_back(task);
  }
  if (copies == 1)
    work_cv_.notify_one();
  else
    work_cv_.notify_all();
}

bool FrameThreads::is_done(const PictureJob& job) {
  std::lock_guard<std::mutex> g(mu_);
  return job.done;
}

void FrameThreads::wait(const PictureJob& job) {
  // The waiting thread works meanwhile: a woken thread starts late on a loaded machine (tens of
  // microseconds on a VM), as long as parsing a small picture takes.
  std::unique_lock<std::mutex> l(mu_);
  while (!job.done)
    if (!run_one(l)) work_cv_.wait(l);
}

void FrameThreads::worker() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_)
    if (!run_one(l)) work_cv_.wait(l);
}

bool FrameThreads::run_one(std::unique_lock<std::mutex>& l) {
  // The oldest picture's motion first, once it is parsed: derivation runs in decoding
  // order, one picture at a time, and frees the pictures waiting behind it.
  if (!jobs_.empty() && jobs_.front()->parsed && !jobs_.front()->deriving) {
    std::shared_ptr<PictureJob> job = jobs_.front();
    job->deriving = true;
    l.unlock();
    derive_picture(*job);
    l.lock();
    job->done = true;
    jobs_.pop_front();
    --next_parse_;
    work_cv_.notify_all();  // waiters, and workers for the next derivation
  } else if (!helps_.empty()) {
    std::shared_ptr<std::function<void()>> task = std::move(helps_.front());
    helps_.pop_front();
    l.unlock();
    (*task)();
    task.reset();
    l.lock();
  } else if (next_parse_ < jobs_.size()) {
    // The oldest picture follows pictures all done, the collocated one included: its motion
    // can be derived as it is parsed, while the PU is in cache, as with no workers.
    const bool oldest = next_parse_ == 0;
    std::shared_ptr<PictureJob> job = jobs_[next_parse_++];
    l.unlock();
    parse_picture(*job, false, oldest);
    l.lock();
    job->parsed = true;
    if (job == jobs_.front()) work_cv_.notify_all();
  } else {
    return false;
  }
  return true;
}

}  // namespace bitsr
