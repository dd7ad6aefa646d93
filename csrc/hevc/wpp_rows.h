// Internal: the CTB rows of one WPP slice segment parsed on several threads (wpp_rows.cpp).
//
// With entropy_coding_sync_enabled_flag each CTB row is a substream starting at an entry
// point, whose contexts come from the row above after its second CTB (9.3.1), and whose
// parsing reads only the left, above and above-right CTBs. So row r can run as soon as row
// r - 1 is two CTBs ahead. Each row writes its records into its own range of the picture's
// record array and its inter PUs into its own list; afterwards the rows are joined in order,
// which gives exactly the records, grid, pending PUs and state of parsing in one thread.
// Where one thread would have stopped (an error, or the end of the segment inside a row
// whose entry points promised more), the rows after that point are discarded.
#pragma once
#include <atomic>
#include <climits>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>
#include <vector>

#include "hevc/cabac.h"
#include "hevc/slice_data.h"

namespace bitsr {

// Contexts stored after the second CTB of a row (9.3.2.4).
struct WppSlot {
  CabacContexts cc;
  bool valid = false;
  int ctb_rs = -1;
};

struct RowState {
  enum Status : int { kRunning, kDone, kEnded, kFailed, kAborted };
  std::atomic<int> progress{0};  // CTBs of the row parsed
  std::atomic<int> status{kRunning};
  // written by the row's thread, read by the owner once the row has finished
  std::exception_ptr error;
  size_t rec_begin = 0, rec_next = 0, rec_end = 0;  // the row's range of Priors::recs
  std::vector<PendingPu> pending;
  int ctb_ok = 0;
  int marked_end = -1;       // CTBs [row start, marked_end) got this slice's address
  bool next_marked = false;  // failed after the next row's first CTB was marked (as one thread does)
  bool ds_valid = false;     // ended the segment: contexts and QpY for a dependent segment
  CabacContexts ds;
  int last_qpy = 0;
};

struct RowJob {
  struct Aborted {};  // a row that an earlier row's end made useless

  RowJob(PictureState& st, const SliceDataInput& in, int first_row, int nrows, int rows_total);
  // Claims rows and parses them until none is left; called by the owner and the helpers.
  void work();
  // Blocks until row r - 1 has parsed `need` CTBs; false when it never will (it stopped, or
  // an earlier row ended the segment).
  bool wait_above(int r, int need);
  void publish();       // after a progress or status change
  void stop_at(int r);  // rows after r are not needed
  void wait_finished();

  PictureState& st;
  const SliceDataInput& in;
  const int first_row;   // CTB row of the segment's first CTB
  const int nrows;       // rows parsed concurrently: one per substream
  const int rows_total;  // rows from first_row to the bottom (the last row may run on)
  std::unique_ptr<RowState[]> rows;
  std::vector<WppSlot> slots;       // per row from first_row
  std::vector<int32_t> first_addr;  // ctb_slice_addr of each row's first CTB at the start
  std::atomic<int> next{0};         // next row to claim
  std::atomic<int> stop_after{INT_MAX};
  std::atomic<int> finished{0};
  std::atomic<int> waiters{0};
  std::mutex mu;
  std::condition_variable cv;
};

// True when `in` can be parsed by rows: WPP without tiles, a segment starting a CTB row, one
// entry point per further row, enough data to be worth it, and helper threads.
bool can_parse_rows(const PictureState& st, const SliceDataInput& in);
// decode_slice_data for such a segment: same results, same exceptions.
void parse_rows(PictureState& st, const SliceDataInput& in);

}  // namespace bitsr
