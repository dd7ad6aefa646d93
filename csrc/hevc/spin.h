// Short busy-waits for threads that expect what they wait for within microseconds: cheaper
// than a sleep and a wake-up, which cost tens of microseconds on a VM.
#pragma once
#include <chrono>

namespace bitsr {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

// Polls `done` until it holds or `until` has passed (the clock is read every 32 polls).
// Returns whether it holds.
template <class Done>
bool spin_until(Done&& done, std::chrono::steady_clock::time_point until) {
  for (int i = 1;; ++i) {
    if (done()) return true;
    cpu_relax();
    if (i % 32 == 0 && std::chrono::steady_clock::now() >= until) return done();
  }
}

}  // namespace bitsr
