// Stand-alone timing of the parser on a raw Annex B file (no Python), for profiling with
// perf/callgrind: bench_parse FILE [repeats] [--no-ctu]
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
  bool ctu = !(argc > 3 && std::strcmp(argv[3], "--no-ctu") == 0);
  double best = 1e9;
  size_t n = 0;
  for (int r = 0; r < reps; ++r) {
    bitsr::DecoderOptions o;
    o.parse_ctu = ctu;
    bitsr::Decoder d(o);
    auto t0 = std::chrono::steady_clock::now();
    d.push_annexb(data.data(), data.size());
    d.flush();
    auto t1 = std::chrono::steady_clock::now();
    n = d.decoded.size();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  std::printf("%zu pictures, best %.3f ms, %.1f pictures/s\n", n, best * 1e3, n / best);
  return 0;
}
