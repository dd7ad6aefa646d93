#include "hevc/picture.h"

#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <vector>

namespace bitsr {

namespace {

// Recently freed prior buffers, reused by size. Bounded so a burst of differently sized
// streams cannot pin memory.
struct Pool {
  std::mutex mu;
  std::vector<std::pair<size_t, void*>> free_list;
  size_t held = 0;
  static constexpr size_t kMaxBuffers = 8;
  static constexpr size_t kMaxBytes = size_t(96) << 20;

  void* get(size_t bytes) {
    {
      std::lock_guard<std::mutex> g(mu);
      for (size_t i = free_list.size(); i-- > 0;) {
        if (free_list[i].first == bytes) {
          void* p = free_list[i].second;
          free_list.erase(free_list.begin() + i);
          held -= bytes;
          return p;
        }
      }
    }
    void* p = std::malloc(bytes);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void put(void* p, size_t bytes) {
    std::lock_guard<std::mutex> g(mu);
    while (!free_list.empty() && (free_list.size() >= kMaxBuffers || held + bytes > kMaxBytes)) {
      held -= free_list.front().first;
      std::free(free_list.front().second);
      free_list.erase(free_list.begin());
    }
    if (bytes > kMaxBytes) {
      std::free(p);
      return;
    }
    free_list.emplace_back(bytes, p);
    held += bytes;
  }
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: pictures may outlive static destruction
  return *p;
}

}  // namespace

void* PriorStorage::allocate(size_t bytes) {
  release();
  p_ = pool().get(bytes);
  bytes_ = bytes;
  // BITSR_POISON=1 fills new buffers with a pattern so reads of unwritten priors show up
  static const bool poison = std::getenv("BITSR_POISON") != nullptr;
  if (poison) std::memset(p_, 0xA5, bytes);
  return p_;
}

void PriorStorage::release() {
  if (p_) pool().put(p_, bytes_);
  p_ = nullptr;
  bytes_ = 0;
}

}  // namespace bitsr
