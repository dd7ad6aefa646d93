// libFuzzer target: a whole Annex B byte stream through bitsr::Decoder (parameter sets,
// slice headers, CTU data, DPB), fed in chunks the way bitsr.extract feeds files. The last
// byte picks strict or concealing mode, the chunk size, and whether the stream is also parsed
// on worker threads (pictures in parallel, and the CTB rows of WPP segments): then every
// picture (all its schema arrays), warning and error must be the same as with one thread.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <vector>

#include "common/error.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  bitsr_fuzz::init_env();
  return 0;
}

namespace {

// What a run handed out, for comparing one thread with several.
struct Run {
  std::vector<std::string> pictures;  // poc, decode index, CTBs decoded, records, grid
  std::vector<std::string> warnings;
  std::string error;
};

// A picture as users see it: identification and every schema array (records no block
// refers to, e.g. of a concealed CTB, may differ and do not matter).
std::string describe(bitsr::Picture& p) {
  std::string s = std::to_string(p.poc) + "/" + std::to_string(p.decode_index) + "/" + std::to_string(p.num_ctb_ok);
  for (auto& e : p.errors) s += "/" + e;
  p.pr.materialize(p.slices);
  const bitsr::SchemaArrays& a = p.pr.schema;
  auto add = [&](const auto& arr) { s.append(reinterpret_cast<const char*>(arr.data()), arr.size() * sizeof(arr[0])); };
  add(a.pred_mode), add(a.cu_log2), add(a.part_mode), add(a.merge_flag), add(a.inter_dir), add(a.mv);
  add(a.ref_idx), add(a.ref_poc), add(a.qp_y), add(a.tu_log2), add(a.residual), add(a.intra_mode);
  add(a.pcm_flag), add(a.transquant_bypass);
  return s;
}

Run run(const uint8_t* data, size_t size, bool strict, size_t chunk, int threads) {
  bitsr::DecoderOptions o = bitsr_fuzz::fuzz_options(strict);
  o.threads = threads;
  o.max_in_flight = threads ? 1 + (int)(size % 5) : 0;
  o.wpp_min_bytes = 0;  // every WPP segment with entry points has its rows parsed in parallel
  o.wpp_inter_min_bytes = 0;
  bitsr::Decoder dec(o);
  Run r;
  auto take = [&] {
    for (auto& p : dec.decoded) r.pictures.push_back(describe(*p));
    bitsr_fuzz::drain(dec);
  };
  try {
    for (size_t pos = 0; pos < size; pos += chunk) {
      dec.push_annexb_chunk(data + pos, std::min(chunk, size - pos), false);
      take();
    }
    dec.push_annexb_chunk(nullptr, 0, true);
    dec.flush();
  } catch (const bitsr::StreamError& e) {
    r.error = e.what();
  }
  take();
  r.warnings = dec.warnings();
  return r;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const uint8_t knob = data[size - 1];
  const bool strict = knob & 1;
  static const size_t kChunks[4] = {1 << 20, 4096, 257, 31};
  const size_t chunk = kChunks[(knob >> 1) & 3];
  const Run one = run(data, size, strict, chunk, 0);
  if (knob & 8) {
    const Run many = run(data, size, strict, chunk, 1 + ((knob >> 4) & 3));
    if (many.pictures != one.pictures || many.warnings != one.warnings || many.error != one.error) {
      std::fprintf(stderr, "bitsr fuzz: threads disagree with one thread (%zu vs %zu pictures, error '%s' vs '%s')\n",
                   many.pictures.size(), one.pictures.size(), many.error.c_str(), one.error.c_str());
      std::abort();
    }
  }
  return 0;
}
