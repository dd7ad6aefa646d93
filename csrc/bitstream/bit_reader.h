// Bounds-checked MSB-first bit reader over an RBSP (emulation prevention already removed).
// Reading past the end throws BitstreamError naming the syntax element, so a truncated
// header can never read outside its buffer.
#pragma once
#include <cstddef>
#include <cstdint>

#include "common/error.h"

namespace bitsr {

class BitReader {
 public:
  BitReader() = default;
  BitReader(const uint8_t* data, size_t size) : data_(data), size_bits_(size * 8) {}

  size_t pos() const { return pos_; }
  size_t size_bits() const { return size_bits_; }
  size_t bits_left() const { return size_bits_ - pos_; }
  bool byte_aligned() const { return (pos_ & 7) == 0; }
  const uint8_t* data() const { return data_; }

  uint32_t u(int n, const char* elem) {
    if (n == 0) return 0;
    if ((size_t)n > bits_left()) fail(elem, std::string("truncated data while reading ") + elem);
    uint32_t v = 0;
    for (int i = 0; i < n; ++i) {
      v = (v << 1) | ((data_[pos_ >> 3] >> (7 - (pos_ & 7))) & 1);
      ++pos_;
    }
    return v;
  }
  bool flag(const char* elem) { return u(1, elem) != 0; }

  uint32_t ue(const char* elem) {
    int lz = 0;
    while (u(1, elem) == 0) {
      if (++lz > 31) fail(elem, std::string("exp-Golomb code too long in ") + elem);
    }
    if (lz == 0) return 0;
    uint64_t v = ((uint64_t)1 << lz) - 1 + u(lz, elem);
    if (v > 0xFFFFFFFEull) fail(elem, std::string("exp-Golomb value overflow in ") + elem);
    return (uint32_t)v;
  }
  int32_t se(const char* elem) {
    uint32_t k = ue(elem);
    int64_t v = (k & 1) ? (int64_t)((k + 1ull) >> 1) : -(int64_t)(k >> 1);
    return (int32_t)v;
  }
  // ue(v) with an inclusive upper bound checked at once.
  uint32_t ue_max(uint32_t hi, const char* elem) {
    uint32_t v = ue(elem);
    if (v > hi) fail(elem, std::string(elem) + " = " + std::to_string(v) + " exceeds " + std::to_string(hi));
    return v;
  }
  int32_t se_range(int32_t lo, int32_t hi, const char* elem) {
    int32_t v = se(elem);
    if (v < lo || v > hi)
      fail(elem, std::string(elem) + " = " + std::to_string(v) + " out of range [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
    return v;
  }
  void skip(size_t n, const char* elem) {
    if (n > bits_left()) fail(elem, std::string("truncated data while skipping ") + elem);
    pos_ += n;
  }
  void byte_align() {
    pos_ = (pos_ + 7) & ~(size_t)7;
    if (pos_ > size_bits_) pos_ = size_bits_;
  }

  // rbsp_trailing_bits() may be followed by cabac_zero_words; more_rbsp_data() per 7.2.
  bool more_rbsp_data() const {
    if (pos_ >= size_bits_) return false;
    // find last 1 bit in buffer
    size_t last = size_bits_;
    size_t byte = (size_bits_ >> 3);
    while (byte > 0 && data_[byte - 1] == 0) --byte;
    if (byte == 0) return false;
    uint8_t b = data_[byte - 1];
    int tz = 0;
    while (!((b >> tz) & 1)) ++tz;
    last = (byte - 1) * 8 + (7 - tz);  // position of the stop bit
    return pos_ < last;
  }

 private:
  const uint8_t* data_ = nullptr;
  size_t size_bits_ = 0;
  size_t pos_ = 0;
};

}  // namespace bitsr
