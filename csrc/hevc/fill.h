// Rectangle fills on the 4x4-block grid: one value of B bytes per block, rows copied with
// constant-size memcpy for the widths CUs and PUs have (the compiler turns them into a few
// wide stores).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bitsr {

template <size_t B>
inline void fill_blocks(uint8_t* p, size_t stride, int w4, int h4, const void* value) {
  alignas(8) uint8_t row[16 * B];
  if constexpr (B == 1 || B == 2) {
    uint64_t pat;
    if constexpr (B == 1) {
      pat = 0x0101010101010101ull * *static_cast<const uint8_t*>(value);
    } else {
      uint16_t v;
      std::memcpy(&v, value, 2);
      pat = 0x0001000100010001ull * v;
    }
    for (size_t i = 0; i < 2 * B; ++i) std::memcpy(row + 8 * i, &pat, 8);
  } else {
    const int n = w4 < 16 ? w4 : 16;
    for (int i = 0; i < n; ++i) std::memcpy(row + i * B, value, B);
  }
  switch (w4) {
#define BITSR_FILL_CASE(W)                                                  \
  case W:                                                                   \
    for (int j = 0; j < h4; ++j, p += stride) std::memcpy(p, row, (W) * B); \
    return;
    BITSR_FILL_CASE(1)
    BITSR_FILL_CASE(2)
    BITSR_FILL_CASE(3)
    BITSR_FILL_CASE(4)
    BITSR_FILL_CASE(6)
    BITSR_FILL_CASE(8)
    BITSR_FILL_CASE(12)
    BITSR_FILL_CASE(16)
#undef BITSR_FILL_CASE
    default:
      for (int j = 0; j < h4; ++j, p += stride)
        for (int i = 0; i < w4; i += 16) std::memcpy(p + (size_t)i * B, row, (size_t)std::min(16, w4 - i) * B);
  }
}

// Typed form: a rectangle of w4 x h4 blocks starting at block index k of a [.., gw] array.
template <class T>
inline void fill_rect(T* a, size_t k, size_t gw, int w4, int h4, T v) {
  fill_blocks<sizeof(T)>(reinterpret_cast<uint8_t*>(a + k), gw * sizeof(T), w4, h4, &v);
}

}  // namespace bitsr
