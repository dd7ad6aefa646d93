// Worker threads that outlive the pools using them. A decoder's FrameThreads runs its worker
// loops on parked threads and gives them back when it is destroyed, so a decoder per file
// (bitsr.extract over many files, bitsr.open per clip) does not create and join threads each
// time: on a 1080p stream of 10 small pictures that cost as much as parsing them.
#pragma once
#include <condition_variable>
#include <functional>
#include <mutex>

namespace bitsr {

// Runs `fn` on an idle parked thread, or on a new one when none is idle, then `after` (if
// given) with the park's mutex held, as the thread goes back to the park: a caller that
// waits for `after` (a Latch) and then asks for a thread gets this one, not a new one. A
// thread parks for a while after its task returns, then exits. Fork-safe: a forked child
// starts with no parked threads (the parent's do not exist there).
void run_parked(std::function<void()> fn, std::function<void()> after = nullptr);

// Threads alive in the park (running a task or idle), for tests.
int parked_threads();

// Counts running tasks: add() as one starts, done() as it ends; wait() returns once none
// runs. done() notifies with the mutex held, so wait() returns only after the last done()
// has let go of the latch: its owner may then destroy it.
class Latch {
 public:
  void add() {
    std::lock_guard<std::mutex> g(mu_);
    ++n_;
  }
  void done() {
    std::lock_guard<std::mutex> g(mu_);
    if (--n_ == 0) cv_.notify_all();
  }
  void wait() {
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [&] { return n_ <= 0; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int n_ = 0;
};

}  // namespace bitsr
