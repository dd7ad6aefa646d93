// Parsing the CTB rows of a WPP slice segment concurrently (wpp_rows.h).
#include "hevc/wpp_rows.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "hevc/slice_decoder.h"
#include "hevc/spin.h"

namespace bitsr {

RowJob::RowJob(PictureState& st_, const SliceDataInput& in_, int first_row_, int nrows_, int rows_total_)
    : st(st_),
      in(in_),
      first_row(first_row_),
      nrows(nrows_),
      rows_total(rows_total_),
      rows(new RowState[(size_t)nrows_]),
      slots((size_t)rows_total_) {
  const int W = st.params.sps->PicWidthInCtbsY;
  first_addr.resize((size_t)nrows);
  for (int r = 0; r < nrows; ++r) first_addr[(size_t)r] = st.ctb_slice_addr[(size_t)(first_row + r) * W];
}

// The progress of a row is stored with release semantics only (a fence per CTB would cost
// more than it saves), so a waiter that goes to sleep just as the row above moves on may miss
// the notification: it sleeps at most kRecheck before it looks again.
constexpr auto kRecheck = std::chrono::microseconds(200);

void RowJob::publish() {
  if (waiters.load(std::memory_order_relaxed) > 0) {
    std::lock_guard<std::mutex> g(mu);
    cv.notify_all();
  }
}

void RowJob::stop_at(int r) {
  int cur = stop_after.load();
  while (r < cur && !stop_after.compare_exchange_weak(cur, r)) {
  }
}

bool RowJob::wait_above(int r, int need) {
  const RowState& a = rows[(size_t)r - 1];
  auto ready = [&] {
    return a.progress.load(std::memory_order_acquire) >= need ||
           a.status.load(std::memory_order_acquire) != RowState::kRunning || stop_after.load() < r;
  };
  if (!ready()) {
    // The row above is usually a CTB or two from there: a short spin spares a sleep. (No
    // yield: it would let the scheduler keep both rows' threads on one core.)
    for (int i = 0; i < 4000 && !ready(); ++i) cpu_relax();
    if (!ready()) {
      std::unique_lock<std::mutex> l(mu);
      waiters.fetch_add(1);
      while (!ready()) cv.wait_for(l, kRecheck);
      waiters.fetch_sub(1);
    }
  }
  return a.progress.load(std::memory_order_acquire) >= need && stop_after.load() >= r;
}

void RowJob::wait_finished() {
  std::unique_lock<std::mutex> l(mu);
  waiters.fetch_add(1);
  while (finished.load() != nrows) cv.wait_for(l, kRecheck);
  waiters.fetch_sub(1);
}

void RowJob::work() {
  for (;;) {
    const int r = next.fetch_add(1);
    if (r >= nrows) return;
    RowState& s = rows[(size_t)r];
    if (r <= stop_after.load()) {
      try {
        SliceDecoder d(st, in);
        d.parse_row(*this, r);
      } catch (const Aborted&) {
        s.status.store(RowState::kAborted);
      } catch (...) {
        s.error = std::current_exception();
        s.status.store(RowState::kFailed);
        stop_at(r);
      }
    } else {
      s.status.store(RowState::kAborted);
    }
    finished.fetch_add(1);
    publish();
  }
}

bool can_parse_rows(const PictureState& st, const SliceDataInput& in) {
  const Pps& pps = *st.params.pps;
  const Sps& sps = *st.params.sps;
  const SliceHeader& sh = *in.sh;
  if (!in.helpers || in.helpers->helpers() < 2) return false;  // (before derive_now: rows leave PUs pending)
  // A small segment parses in well under a millisecond: sharing it out costs more than it
  // saves (the rows' records are joined at the end), and other pictures keep the threads busy.
  const int64_t min_bytes = sh.slice_type == SLICE_I ? in.rows_min_bytes : in.rows_inter_min_bytes;
  if (min_bytes < 0 || (int64_t)in.size < min_bytes) return false;
  if (!pps.entropy_coding_sync_enabled_flag || pps.tiles_enabled_flag || in.entry_points.empty()) return false;
  const int W = sps.PicWidthInCtbsY;
  if (sh.slice_segment_address < 0 || sh.slice_segment_address >= sps.PicSizeInCtbsY ||
      sh.slice_segment_address % W != 0)
    return false;
  const int rows_left = sps.PicHeightInCtbsY - sh.slice_segment_address / W;
  return (int)in.entry_points.size() + 1 <= rows_left;
}

void parse_rows(PictureState& st, const SliceDataInput& in) {
  const Sps& sps = *st.params.sps;
  Priors& pr = st.pic.pr;
  PictureStateImpl& impl = *st.impl;
  const int W = sps.PicWidthInCtbsY;
  const int first_row = in.sh->slice_segment_address / W;
  const int nrows = (int)in.entry_points.size() + 1;
  const int rows_total = sps.PicHeightInCtbsY - first_row;
  if (!in.sh->dependent_slice_segment_flag) impl.slice_addr_rs = in.sh->slice_segment_address;

  // Each row gets a range of records as large as its 4x4 blocks; the last row's runs to the
  // bottom of the picture.
  const size_t n0 = pr.nrec;
  const size_t per_row = (size_t)(sps.CtbSizeY / 4) * (size_t)pr.gw;
  pr.reserve(n0 + per_row * (size_t)rows_total);
  auto job = std::make_shared<RowJob>(st, in, first_row, nrows, rows_total);
  for (int r = 0; r < nrows; ++r) {
    RowState& s = job->rows[(size_t)r];
    s.rec_begin = s.rec_next = n0 + per_row * (size_t)r;
    s.rec_end = r + 1 < nrows ? s.rec_begin + per_row : n0 + per_row * (size_t)rows_total;
  }
  pr.nrec = pr.cap;  // grid reads of other rows' records are in bounds (Priors::at)

  auto task = std::make_shared<std::function<void()>>([job] { job->work(); });
  in.helpers->offer(task, std::min(nrows - 1, in.helpers->helpers() - 1));
  job->work();
  job->wait_finished();

  // The rows one thread would have parsed: up to the first that did not hand over to the next.
  int k = 0;
  while (k < nrows - 1 && job->rows[(size_t)k].status.load() == RowState::kDone) ++k;

  // Rows after k never happened: their CTBs get back their marks and flags.
  for (int r = k + 1; r < nrows; ++r) {
    const RowState& s = job->rows[(size_t)r];
    const int start = (first_row + r) * W;
    for (int rs = start; rs < s.marked_end; ++rs) {
      st.ctb_slice_addr[(size_t)rs] = rs == start ? job->first_addr[(size_t)r] : -1;
      st.pic.ctb_ok[(size_t)rs] = 0;
    }
  }
  const RowState& last = job->rows[(size_t)k];
  if (last.status.load() == RowState::kFailed && last.next_marked)
    st.ctb_slice_addr[(size_t)(first_row + k + 1) * W] = impl.slice_addr_rs;

  // Records of rows 0..k, in row order, from n0 on; the grid of their CTBs follows.
  std::vector<int64_t> shift((size_t)k + 1);
  size_t dst = n0;
  for (int r = 0; r <= k; ++r) {
    const RowState& s = job->rows[(size_t)r];
    const size_t n = s.rec_next - s.rec_begin;
    if (n && dst != s.rec_begin) std::memmove(pr.recs + dst, pr.recs + s.rec_begin, n * sizeof(PuRec));
    shift[(size_t)r] = (int64_t)dst - (int64_t)s.rec_begin;
    dst += n;
  }
  // (CTBs past the last mark were not touched)
  const int kept_end = std::max(last.marked_end, (first_row + k) * W + 1);
  const int last_row = (kept_end - 1) / W;
  // Each CTB row's blocks hold records of the row that parsed it (the last row's of the rows
  // it ran on); blocks outside that row's records were not written by this segment.
  for (int row = first_row; row <= last_row; ++row) {
    const size_t owner = (size_t)std::min(row - first_row, nrows - 1);
    const RowState& s = job->rows[owner];
    const uint32_t begin = (uint32_t)s.rec_begin, n = (uint32_t)(s.rec_next - s.rec_begin);
    const uint32_t add = (uint32_t)shift[owner];  // modulo 2^32
    const size_t y0 = (size_t)row * (sps.CtbSizeY / 4), y1 = std::min((size_t)pr.gh, y0 + sps.CtbSizeY / 4);
    uint32_t* g = pr.pu.data() + y0 * (size_t)pr.gw;
    const size_t count = (y1 - y0) * (size_t)pr.gw;
    for (size_t i = 0; i < count; ++i) g[i] = g[i] - begin < n ? g[i] + add : g[i];
  }
  pr.nrec = dst;
  pr.shrink();

  for (int r = 0; r <= k; ++r) {
    const RowState& s = job->rows[(size_t)r];
    st.pic.num_ctb_ok += s.ctb_ok;
    for (PendingPu p : s.pending) {
      p.rec = (uint32_t)((int64_t)p.rec + shift[(size_t)r]);
      st.pending.push_back(p);
    }
  }
  // The contexts and QP a following segment reads, as one thread leaves them.
  const int slot_end = last_row - first_row;
  for (int r = std::min(slot_end, rows_total - 1); r >= 0; --r)
    if (job->slots[(size_t)r].valid) {
      impl.wpp = job->slots[(size_t)r];
      break;
    }
  if (last.status.load() == RowState::kEnded) {
    if (last.ds_valid) {
      std::memcpy(&impl.ds, &last.ds, sizeof(impl.ds));
      impl.ds_valid = true;
    }
    impl.last_qpy = last.last_qpy;
  }
  // The exceptions die here: the job may be freed later on a helper thread, and an exception
  // object's reference count lives in the (uninstrumented) C++ runtime, out of TSan's sight.
  std::exception_ptr error = last.status.load() == RowState::kFailed ? last.error : nullptr;
  for (int r = 0; r < nrows; ++r) job->rows[(size_t)r].error = nullptr;
  if (error) std::rethrow_exception(error);
}

}  // namespace bitsr
