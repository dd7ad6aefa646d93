// libFuzzer target: the NAL-level entry points. The first byte selects how the rest is
// framed: length-prefixed packets (ISO/IEC 14496-15, length size 1, 2 or 4) pushed as
// access units, an hvcC record followed by such packets (the MP4/MKV path), or bare NAL
// units with 2-byte sizes through push_nal, with bump_one() calls in between.
#include <cstddef>
#include <cstdint>

#include "common/error.h"
#include "fuzz_common.h"

namespace {

uint32_t be16(const uint8_t* p) { return (uint32_t)p[0] << 8 | p[1]; }

// Splits `data` into records of a 2-byte big-endian size and the bytes that follow.
template <class F>
void for_each_record(const uint8_t* data, size_t size, F&& f) {
  size_t pos = 0;
  while (size - pos >= 2) {
    size_t n = be16(data + pos);
    pos += 2;
    if (n > size - pos) n = size - pos;
    f(data + pos, n);
    pos += n;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bitsr_fuzz::init_env();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t mode = data[0];
  const bool strict = mode & 0x80;
  static const int kLen[4] = {4, 1, 2, 4};
  const int length_size = kLen[mode & 3];
  bitsr::Decoder dec(bitsr_fuzz::fuzz_options(strict));
  bitsr_fuzz::feed(dec, [&] {
    switch ((mode >> 2) & 3) {
      case 0:  // access units of length-prefixed NAL units
        for_each_record(data + 1, size - 1, [&](const uint8_t* p, size_t n) {
          dec.push_length_prefixed(p, n, length_size, 0);
          dec.end_access_unit();
          bitsr_fuzz::drain(dec);
        });
        break;
      case 1: {  // hvcC record, then access units with its NAL length size
        bool first = true;
        int ls = 4;
        for_each_record(data + 1, size - 1, [&](const uint8_t* p, size_t n) {
          if (first) {
            ls = dec.push_hvcc(p, n);
            first = false;
            return;
          }
          dec.push_length_prefixed(p, n, ls, 0);
          dec.end_access_unit();
          bitsr_fuzz::drain(dec);
        });
        break;
      }
      default:  // bare NAL units
        for_each_record(data + 1, size - 1, [&](const uint8_t* p, size_t n) {
          dec.push_nal(p, n, 0);
          if (n && (p[n - 1] & 0x0f) == 0x0f) dec.bump_one();
          bitsr_fuzz::drain(dec);
        });
        break;
    }
    dec.flush();
  });
  return 0;
}
