#include "hevc/frame_threads.h"

#include <algorithm>

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
  PictureState& st = *job.state;
  // Derived as parsed, by a worker: later pictures may follow it CTB row by CTB row.
  st.publish = derive_now && !mark_parsed && !st.params.pps->tiles_enabled_flag && st.records_fixed();
  job.pic->motion.set_state(st.publish ? MotionProgress::kParsing : MotionProgress::kIdle);
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

void derive_picture(PictureJob& job, bool concurrent) {
  PictureState& st = *job.state;
  Picture& pic = st.pic;
  const Sps& sps = *st.params.sps;
  const auto& ts_of = st.params.maps->ctb_rs_to_ts;
  // Later pictures may read this one's motion while it is derived, CTB by CTB in raster
  // order, which is the decoding order only without tiles. Room for the concealment records
  // first: they must not move the records being read.
  if (concurrent && !st.params.pps->tiles_enabled_flag) {
    if (st.published == 0) pic.pr.reserve(pic.pr.nrec + (size_t)sps.PicSizeInCtbsY);
    st.publish = true;
    pic.motion.set_state(MotionProgress::kDeriving);
  }
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
  pic.motion.publish(INT_MAX);
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
    count_work();
  }
  work_cv_.notify_one();
}

void FrameThreads::offer(const std::shared_ptr<std::function<void()>>& task, int copies) {
  row_segments_.fetch_add(1);
  if (copies <= 0) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (int i = 0; i < copies; ++i) helps_.push_back(task);
    count_work();
  }
  if (copies == 1)
    work_cv_.notify_one();
  else
    work_cv_.notify_all();
}

namespace {
thread_local bool tl_decoder_waiting = false;  // in FrameThreads::wait
}

bool FrameThreads::has_work() const { return tl_decoder_waiting || waiting_work_.load(std::memory_order_relaxed) > 0; }

bool FrameThreads::is_done(const PictureJob& job) {
  std::lock_guard<std::mutex> g(mu_);
  return job.done;
}

void FrameThreads::wait(const PictureJob& job) {
  // The waiting thread works meanwhile: a woken thread starts late on a loaded machine (tens of
  // microseconds on a VM), as long as parsing a small picture takes.
  std::unique_lock<std::mutex> l(mu_);
  tl_decoder_waiting = true;
  while (!job.done)
    if (!run_one(l)) work_cv_.wait(l);
  tl_decoder_waiting = false;
}

void FrameThreads::worker() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_)
    if (!run_one(l)) work_cv_.wait(l);
}

bool FrameThreads::derivable(size_t i) const {
  // A parsed picture's motion may be derived once every earlier picture's derivation has
  // begun: its collocated picture is one of them, and the derivations that wait on another's
  // progress (derive_pending) so always wait on one that runs, down to the oldest, which
  // waits on nothing.
  if (i >= next_parse_ || jobs_[i]->deriving || !jobs_[i]->parsed) return false;
  return deriving_before(i) && col_ready(*jobs_[i], false);
}

bool FrameThreads::deriving_before(size_t i) const {
  for (size_t k = 0; k < i; ++k)
    if (!jobs_[k]->deriving) return false;
  return true;
}

void FrameThreads::mark_done(PictureJob& job) {
  job.done = true;
  while (!jobs_.empty() && jobs_.front()->done) {
    jobs_.pop_front();
    --next_parse_;
  }
  work_cv_.notify_all();  // waiters, and threads for what the job held back
}

bool FrameThreads::col_ready(const PictureJob& job, bool pending_only) {
  // So that a derivation never holds a thread long: its collocated pictures are derived, or
  // being derived from parsed motion (fast), not still being parsed.
  for (const auto& s : job.slices)
    if ((!pending_only || s->range.begin != s->range.end) && s->col && s->sh.slice_temporal_mvp_enabled_flag &&
        s->col->motion.get() != INT_MAX && s->col->motion.state() != MotionProgress::kDeriving)
      return false;
  return true;
}

bool FrameThreads::run_one(std::unique_lock<std::mutex>& l) {
  // Motion derivation first, in decoding order; several pictures' run at once, each behind
  // its collocated picture's progress (Picture::motion), so that it is no sequential chain.
  size_t d = 0;
  while (d < next_parse_ && jobs_[d]->deriving) ++d;
  if (derivable(d)) {
    std::shared_ptr<PictureJob> job = jobs_[d];
    job->deriving = true;
    job->pic->motion.set_state(MotionProgress::kDeriving);  // (derivable() of the next reads it)
    if (derivable(d + 1)) work_cv_.notify_one();
    l.unlock();
    derive_picture(*job, true);
    l.lock();
    mark_done(*job);
  } else if (!helps_.empty()) {
    std::shared_ptr<std::function<void()>> task = std::move(helps_.front());
    helps_.pop_front();
    count_work();
    l.unlock();
    (*task)();
    task.reset();
    l.lock();
  } else if (next_parse_ < jobs_.size()) {
    // A picture behind pictures all being derived (or done), its collocated picture among
    // them, is derived as it is parsed, while each PU is in cache, as with no workers: CTB row
    // by CTB row behind the collocated picture's (the oldest waits on nothing). Others are
    // parsed now and derived later.
    bool inline_motion = deriving_before(next_parse_);
    std::shared_ptr<PictureJob> job = jobs_[next_parse_++];
    job->deriving = inline_motion;
    count_work();
    l.unlock();
    parse_picture(*job, false, inline_motion);
    // Left PUs pending (parsed by rows, or it would have waited too long): derived here only
    // if that cannot hold the thread long, else by the scheduler, like any parsed picture.
    if (inline_motion && !(inline_motion = col_ready(*job))) job->pic->motion.set_state(MotionProgress::kIdle);
    if (inline_motion) derive_picture(*job, true);
    l.lock();
    job->parsed = true;
    job->deriving = inline_motion;
    if (inline_motion) {
      mark_done(*job);
    } else {
      const size_t i = (size_t)(std::find(jobs_.begin(), jobs_.end(), job) - jobs_.begin());
      if (derivable(i)) work_cv_.notify_all();
    }
  } else {
    return false;
  }
  return true;
}

}  // namespace bitsr
