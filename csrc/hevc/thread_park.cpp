#include "hevc/thread_park.h"

#include <pthread.h>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <deque>
#include <thread>

#include "hevc/spin.h"

namespace bitsr {

namespace {

// How long an idle thread waits for another task before it exits.
constexpr auto kIdle = std::chrono::seconds(10);

struct Task {
  std::function<void()> fn;
  std::shared_ptr<ParkTicket> ticket;
};

struct Park {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Task> tasks;
  int idle = 0;                // threads waiting for a task
  int returning = 0;           // threads whose task will return soon (returning())
  int polling = 0;             // threads polling for a task before they wait
  int starting = 0;            // threads made but not yet looking for a task
  int threads = 0;             // threads alive
  std::atomic<int> queued{0};  // tasks.size(), for polling threads
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

// How long a thread back from a task polls for the next before it waits: the next file's
// decoder (bitsr.extract over many files) then takes it over without a wake-up, which costs
// both threads tens of microseconds on a VM.
constexpr auto kPoll = std::chrono::microseconds(300);

void thread_main(Park* p) {
  std::unique_lock<std::mutex> l(p->mu);
  --p->starting;
  bool from_task = false;
  for (;;) {
    if (p->tasks.empty() && from_task) {
      ++p->polling;
      l.unlock();
      spin_until([p] { return p->queued.load(std::memory_order_relaxed) != 0; },
                 std::chrono::steady_clock::now() + kPoll);
      l.lock();
      --p->polling;
    }
    from_task = false;
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
    p->queued.store((int)p->tasks.size(), std::memory_order_relaxed);
    l.unlock();
    t.fn();
    t.fn = nullptr;  // the task's captures go before the thread parks
    l.lock();
    // With the park's mutex held: a pool started meanwhile counted on this thread (returning()),
    // and finds it idle, or it takes that pool's task next.
    if (t.ticket->counted) --p->returning;
    t.ticket->running = false;
    from_task = true;
  }
}

}  // namespace

std::shared_ptr<ParkTicket> run_parked(std::function<void()> fn) {
  Park& p = park();
  auto ticket = std::make_shared<ParkTicket>();
  std::lock_guard<std::mutex> g(p.mu);
  p.tasks.push_back(Task{std::move(fn), ticket});
  p.queued.store((int)p.tasks.size(), std::memory_order_relaxed);
  // Polling, returning and starting threads look for a task before they wait. (A thread just
  // made may not run for a while on a loaded machine: counted, it is not made again.)
  const int coming = p.polling + p.returning + p.starting;
  if (coming + p.idle >= (int)p.tasks.size()) {
    if (coming < (int)p.tasks.size()) p.cv.notify_one();
    return ticket;
  }
  try {
    std::thread(thread_main, &p).detach();
  } catch (...) {  // std::system_error: no thread can be made; the task never runs
    p.tasks.pop_back();
    p.queued.store((int)p.tasks.size(), std::memory_order_relaxed);
    throw;
  }
  ++p.threads;
  ++p.starting;
  return ticket;
}

void returning(ParkTicket& t) {
  Park& p = park();
  std::lock_guard<std::mutex> g(p.mu);
  if (t.running && !t.counted) {
    t.counted = true;
    ++p.returning;
  }
}

void run_idle(std::function<void()> fn) {
  std::thread([fn = std::move(fn)] {
#ifdef SCHED_IDLE
    sched_param param{};
    (void)sched_setscheduler(0, SCHED_IDLE, &param);  // this thread only (Linux); best effort
#endif
    fn();
  }).detach();
}

int parked_threads() {
  Park& p = park();
  std::lock_guard<std::mutex> g(p.mu);
  return p.threads;
}

}  // namespace bitsr
