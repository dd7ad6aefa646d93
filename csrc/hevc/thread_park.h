// Worker threads that outlive the pools using them. A decoder's FrameThreads runs its worker
// loops on parked threads and gives them back when it is destroyed, so a decoder per file
// (bitsr.extract over many files, bitsr.open per clip) does not create and join threads each
// time: on a 1080p stream of 10 small pictures that cost as much as parsing them.
#pragma once
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>

namespace bitsr {

// A task handed to the park, for its owner to say that it is about to return.
struct ParkTicket {
  bool running = true;   // guarded by the park's mutex
  bool counted = false;  // counted as returning (returning())
};

// Runs `fn` on an idle parked thread, or on a new one when none is idle (or returning). A
// thread parks for a while after its task returns, then exits. Fork-safe: a forked child
// starts with no parked threads (the parent's do not exist there).
std::shared_ptr<ParkTicket> run_parked(std::function<void()> fn);

// The task of `t` has been told to return and will soon: until it has, run_parked counts its
// thread as idle, so a pool started right after takes it over without waiting for it, and
// without a new thread.
void returning(ParkTicket& t);

// Runs `fn` on a new thread at the lowest scheduling priority (Linux SCHED_IDLE; elsewhere
// the normal one), which ends with it: it is not parked, as an unprivileged thread cannot
// raise its priority again.
void run_idle(std::function<void()> fn);

// Threads alive in the park (running a task or idle), for tests.
int parked_threads();

}  // namespace bitsr
