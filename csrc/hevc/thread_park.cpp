#include "hevc/thread_park.h"

#include <pthread.h>

#include <chrono>
#include <deque>
#include <thread>

namespace bitsr {

namespace {

// How long an idle thread waits for another task before it exits.
constexpr auto kIdle = std::chrono::seconds(10);

struct Task {
  std::function<void()> fn, after;
};

struct Park {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> tasks;
  int idle = 0;     // threads waiting for a task
  int threads = 0;  // threads alive
};

// Never destroyed: at exit, parked threads may still wait on it. A forked child gets a fresh
// one (the old one's threads are the parent's, and its mutex may be held by one of them).
Park* g_park = nullptr;
std::once_flag g_once;

void before_fork() { g_park->mu.lock(); }
void after_fork_parent() { g_park->mu.unlock(); }
void after_fork_child() { g_park = new Park; }

Park& park() {
  std::call_once(g_once, [] {
    g_park = new Park;
    pthread_atfork(before_fork, after_fork_parent, after_fork_child);
  });
  return *g_park;
}

void thread_main(Park* p) {
  std::unique_lock<std::mutex> l(p->mu);
  for (;;) {
    if (p->tasks.empty()) {
      ++p->idle;
      const bool got = p->cv.wait_for(l, kIdle, [p] { return !p->tasks.empty(); });
      --p->idle;
      if (!got) {
        --p->threads;
        return;
      }
    }
    Task t = std::move(p->tasks.front());
    p->tasks.pop_front();
    l.unlock();
    t.fn();
    t.fn = nullptr;  // the task's captures go before the thread parks
    l.lock();
    // With the park's mutex held: whoever `after` releases can only reach run_parked once
    // this thread waits as idle (or has taken the next task), so it is reused, never doubled.
    if (t.after) t.after();
  }
}

}  // namespace

void run_parked(std::function<void()> fn, std::function<void()> after) {
  Park& p = park();
  std::lock_guard<std::mutex> g(p.mu);
  p.tasks.push_back(Task{std::move(fn), std::move(after)});
  if (p.idle >= (int)p.tasks.size()) {
    p.cv.notify_one();
    return;
  }
  try {
    std::thread(thread_main, &p).detach();
  } catch (...) {  // std::system_error: no thread can be made; the task never runs
    p.tasks.pop_back();
    throw;
  }
  ++p.threads;
}

int parked_threads() {
  Park& p = park();
  std::lock_guard<std::mutex> g(p.mu);
  return p.threads;
}

}  // namespace bitsr
