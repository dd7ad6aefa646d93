// Stand-alone timing of the parser on a raw Annex B file (no Python), for profiling with
// perf/callgrind: bench_parse FILE [repeats] [--no-ctu] [--threads N] [--in-flight N]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <vector>

#include "hevc/decoder.h"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s FILE [repeats] [--no-ctu]\n", argv[0]);
    return 2;
  }
  std::ifstream f(argv[1], std::ios::binary);
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  int reps = argc > 2 ? std::atoi(argv[2]) : 5;
  bool ctu = true;
  int threads = 0, in_flight = 0;
  for (int i = 3; i < argc; ++i) {
    if (std::strcmp(argv[i], "--no-ctu") == 0) ctu = false;
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = std::atoi(argv[++i]);
    if (std::strcmp(argv[i], "--in-flight") == 0 && i + 1 < argc) in_flight = std::atoi(argv[++i]);
  }
  double best = 1e9;
  size_t n = 0;
  for (int r = 0; r < reps; ++r) {
    bitsr::DecoderOptions o;
    o.parse_ctu = ctu;
    o.threads = threads;
    o.max_in_flight = in_flight;
    bitsr::Decoder d(o);
    auto t0 = std::chrono::steady_clock::now();
    // in chunks, popping pictures as a streaming consumer does (memory stays bounded)
    n = 0;
    for (size_t i = 0; i < data.size(); i += 1 << 16) {
      d.push_annexb_chunk(data.data() + i, std::min<size_t>(1 << 16, data.size() - i), false);
      n += d.decoded.size();
      d.decoded.clear();
      d.output.clear();
    }
    d.push_annexb_chunk(nullptr, 0, true);
    d.flush();
    n += d.decoded.size();
    auto t1 = std::chrono::steady_clock::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  std::printf("%zu pictures, best %.3f ms, %.1f pictures/s\n", n, best * 1e3, n / best);
  return 0;
}
