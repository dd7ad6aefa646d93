#include "hevc/frame_threads.h"

#include <algorithm>

#include "common/error.h"
#include "hevc/ps.h"
#include "hevc/spin.h"

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

std::shared_ptr<FrameThreads> FrameThreads::start(int threads, bool background) {
  std::shared_ptr<FrameThreads> pool(new FrameThreads);
  pool->pid_ = getpid();
  try {
    for (; pool->workers_ < threads; ++pool->workers_)
      if (background)
        run_idle([pool] { pool->worker(); });
      else
        pool->tickets_.push_back(run_parked([pool] { pool->worker(); }));
  } catch (...) {  // no thread could be made: stop the loops started
    pool->stop();
    throw;
  }
  return pool;
}

void FrameThreads::stop() {
  {
    std::unique_lock<std::mutex> l(mu_);
    stop_ = true;
    stopping_.store(true, std::memory_order_relaxed);
    work_cv_.notify_all();  // (no system call when no worker sleeps)
    idle_cv_.wait(l, [this] { return running_ == 0; });
    jobs_.clear();  // (in this thread: the pool itself may go in a worker's)
    helps_.clear();
    next_parse_ = 0;
    count_work();
  }
  for (auto& t : tickets_) returning(*t);
}

bool FrameThreads::forked() const { return getpid() != pid_; }

void FrameThreads::submit(std::shared_ptr<PictureJob> job) {
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.push_back(std::move(job));
    count_work();
  }
  wake(false);
}

void FrameThreads::offer(const std::shared_ptr<std::function<void()>>& task, int copies) {
  row_segments_.fetch_add(1);
  if (copies <= 0) return;
  {
    std::lock_guard<std::mutex> g(mu_);
    for (int i = 0; i < copies; ++i) helps_.push_back(task);
    count_work();
  }
  wake(copies > 1);
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
    if (!run_one(l)) {
      decoder_sleeping_ = true;
      work_cv_.wait(l);
      decoder_sleeping_ = false;
    }
  tl_decoder_waiting = false;
}

void FrameThreads::worker() {
  std::unique_lock<std::mutex> l(mu_);
  bool fresh = true;
  while (!stop_) {
    if (run_one(l)) continue;
    if (fresh || draining_) {
      // The first picture comes some tens of microseconds after the pool starts (parameter
      // sets, two slice headers), and the pool is stopped soon after the stream ends: poll
      // for a while rather than sleep, a wake-up costs the waking thread and this one tens of
      // microseconds on a VM. Not in between: there, a polling worker would take a core from
      // the FFmpeg threads of bitsr.open.
      fresh = false;
      if (!poll(l) && draining_) {
        ++sleeping_;
        work_cv_.wait(l);
        --sleeping_;
      }
      continue;
    }
    ++sleeping_;
    work_cv_.wait(l);
    --sleeping_;
  }
}

bool FrameThreads::poll(std::unique_lock<std::mutex>& l) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kPollUs);
  for (;;) {
    const int seen = wakes_.load(std::memory_order_relaxed);  // (with mu_ held: no wake() missed)
    l.unlock();
    const bool late = !spin_until(
        [&] { return wakes_.load(std::memory_order_relaxed) != seen || stopping_.load(std::memory_order_relaxed); },
        until);
    l.lock();
    if (stop_ || runnable()) return true;
    if (late) return false;
  }
}

void FrameThreads::wake(bool all) {
  wakes_.fetch_add(1, std::memory_order_relaxed);
  if (all)
    work_cv_.notify_all();
  else
    work_cv_.notify_one();
}

void FrameThreads::drain() {
  std::lock_guard<std::mutex> g(mu_);
  draining_ = true;
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
  // The decoder's thread may wait for it; sleeping workers, for what it held back. A wake-up
  // for nothing costs the waking thread tens of microseconds on a VM.
  if (decoder_sleeping_ || (sleeping_ && runnable()))
    wake(true);
  else
    wakes_.fetch_add(1, std::memory_order_relaxed);  // for a polling worker
}

size_t FrameThreads::next_derivation() const {
  size_t d = 0;
  while (d < next_parse_ && jobs_[d]->deriving) ++d;
  return d;
}

bool FrameThreads::runnable() const {
  return derivable(next_derivation()) || !helps_.empty() || next_parse_ < jobs_.size();
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

void FrameThreads::task_ended() {
  if (--running_ == 0 && stop_) idle_cv_.notify_all();
}

bool FrameThreads::run_one(std::unique_lock<std::mutex>& l) {
  // Motion derivation first, in decoding order; several pictures' run at once, each behind
  // its collocated picture's progress (Picture::motion), so that it is no sequential chain.
  const size_t d = next_derivation();
  if (derivable(d)) {
    std::shared_ptr<PictureJob> job = jobs_[d];
    job->deriving = true;
    job->pic->motion.set_state(MotionProgress::kDeriving);  // (derivable() of the next reads it)
    if (derivable(d + 1)) wake(false);
    ++running_;
    l.unlock();
    derive_picture(*job, true);
    l.lock();
    task_ended();
    mark_done(*job);
  } else if (!helps_.empty()) {
    std::shared_ptr<std::function<void()>> task = std::move(helps_.front());
    helps_.pop_front();
    count_work();
    ++running_;
    l.unlock();
    (*task)();
    task.reset();
    l.lock();
    task_ended();
  } else if (next_parse_ < jobs_.size()) {
    // A picture behind pictures all being derived (or done), its collocated picture among
    // them, is derived as it is parsed, while each PU is in cache, as with no workers: CTB row
    // by CTB row behind the collocated picture's (the oldest waits on nothing). Others are
    // parsed now and derived later.
    bool inline_motion = deriving_before(next_parse_);
    std::shared_ptr<PictureJob> job = jobs_[next_parse_++];
    job->deriving = inline_motion;
    count_work();
    ++running_;
    l.unlock();
    parse_picture(*job, false, inline_motion);
    // Left PUs pending (parsed by rows, or it would have waited too long): derived here only
    // if that cannot hold the thread long, else by the scheduler, like any parsed picture.
    if (inline_motion && !(inline_motion = col_ready(*job))) job->pic->motion.set_state(MotionProgress::kIdle);
    if (inline_motion) derive_picture(*job, true);
    l.lock();
    task_ended();
    job->parsed = true;
    job->deriving = inline_motion;
    if (inline_motion) {
      mark_done(*job);
    } else {
      const size_t i = (size_t)(std::find(jobs_.begin(), jobs_.end(), job) - jobs_.begin());
      if (derivable(i)) wake(true);
    }
  } else {
    return false;
  }
  return true;
}

}  // namespace bitsr
