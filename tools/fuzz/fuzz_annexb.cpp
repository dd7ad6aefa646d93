// libFuzzer target: a whole Annex B byte stream through bitsr::Decoder (parameter sets,
// slice headers, CTU data, DPB), fed in chunks the way bitsr.extract feeds files. The last
// byte picks strict or concealing mode and the chunk size, so both modes and the chunked
// NAL splitter see every input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>

#include "common/error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bitsr_fuzz::init_env();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t knob = data[size - 1];
  const bool strict = knob & 1;
  static const size_t kChunks[4] = {1 << 20, 4096, 257, 31};
  const size_t chunk = kChunks[(knob >> 1) & 3];
  bitsr::Decoder dec(bitsr_fuzz::fuzz_options(strict));
  bitsr_fuzz::feed(dec, [&] {
    for (size_t pos = 0; pos < size; pos += chunk) {
      dec.push_annexb_chunk(data + pos, std::min(chunk, size - pos), false);
      bitsr_fuzz::drain(dec);
    }
    dec.push_annexb_chunk(nullptr, 0, true);
    dec.flush();
  });
  return 0;
}
