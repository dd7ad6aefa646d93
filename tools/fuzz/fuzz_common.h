// Shared by the libFuzzer targets: decoder options sized for fuzzing, and a check of every
// finished picture. The check reads every prior (so ASan sees out-of-bounds buffers) and
// traps on values the schema does not allow; with BITSR_POISON set, a block the parser
// forgot to write holds 0xA5 bytes and fails the check too.
#pragma once
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "common/error.h"
#include "hevc/decoder.h"

namespace bitsr_fuzz {

inline bitsr::DecoderOptions fuzz_options(bool strict) {
  bitsr::DecoderOptions o;
  o.strict = strict;
  // Small pictures keep executions fast; every other limit stays at its default so the
  // fuzzer exercises the real bounds.
  o.limits.max_luma_samples = 1 << 20;
  o.limits.max_dimension = 4096;
  o.limits.max_nal_size = 1 << 20;
  return o;
}

[[noreturn]] inline void invariant_failed(const char* what, int64_t i) {
  std::fprintf(stderr, "bitsr fuzz: invariant violated: %s at block %lld\n", what, (long long)i);
  std::abort();
}

// Every value lies in its documented range and unused lists are empty (docs/schema.md). The
// check materialises the schema arrays from the PU records, as the Python layer does.
inline void check_picture(bitsr::Picture& p) {
  bitsr::Priors& pr = p.pr;
  const size_t n = (size_t)pr.gw * pr.gh;
  if (!p.sps || n != ((size_t)(p.sps->width + 3) / 4) * ((p.sps->height + 3) / 4)) invariant_failed("grid size", -1);
  if ((int)p.ctb_ok.size() != p.sps->PicSizeInCtbsY) invariant_failed("ctb_ok size", -1);
  for (size_t i = 0; i < n; ++i)
    if (pr.pu[i] >= pr.nrec) invariant_failed("block without a PU record", i);
  pr.materialize(p.slices);
  const bitsr::SchemaArrays& r = pr.schema;
  for (size_t i = 0; i < n; ++i) {
    const int pm = r.pred_mode[i];
    if (pm < 0 || pm > 2) invariant_failed("pred_mode", i);
    if (r.cu_log2[i] < 3 || r.cu_log2[i] > 6) invariant_failed("cu_log2", i);
    if (r.tu_log2[i] < 2 || r.tu_log2[i] > 6) invariant_failed("tu_log2", i);
    if (r.part_mode[i] > 7) invariant_failed("part_mode", i);
    if (r.merge_flag[i] > 1 || r.residual[i] > 1 || r.pcm_flag[i] > 1 || r.transquant_bypass[i] > 1)
      invariant_failed("flag", i);
    const int dir = r.inter_dir[i];
    if (dir > 3 || (pm == bitsr::PM_INTRA) != (dir == 0)) invariant_failed("inter_dir", i);
    const int im = r.intra_mode[i];
    if ((pm == bitsr::PM_INTRA) ? im > 34 : im != 255) invariant_failed("intra_mode", i);
    if (r.qp_y[i] < -48 || r.qp_y[i] > 51) invariant_failed("qp_y", i);
    for (int l = 0; l < 2; ++l) {
      const bool used = (dir >> l) & 1;
      const int ri = r.ref_idx[i * 2 + l];
      if (used ? (ri < 0 || ri > 15) : ri != -1) invariant_failed("ref_idx", i);
      if ((r.ref_poc[i * 2 + l] == bitsr::kNoRefPoc) == used) invariant_failed("ref_poc", i);
      if (!used && (r.mv[i * 4 + l * 2] || r.mv[i * 4 + l * 2 + 1])) invariant_failed("mv of an unused list", i);
    }
  }
}

// Takes everything the decoder finished, checking each picture once.
inline void drain(bitsr::Decoder& d) {
  while (!d.decoded.empty()) {
    check_picture(*d.decoded.front());
    d.decoded.pop_front();
  }
  d.output.clear();
}

// Runs `body` (feeding `d`), taking the errors hostile input is allowed to raise; what the
// decoder finished before an error must still be well formed, so it is drained either way.
template <class Body>
inline void feed(bitsr::Decoder& d, Body&& body) {
  try {
    body();
  } catch (const bitsr::BitstreamError&) {
  } catch (const bitsr::LimitError&) {
  } catch (const bitsr::UnsupportedError&) {
  }
  drain(d);
}

inline void init_env() { setenv("BITSR_POISON", "1", 1); }

}  // namespace bitsr_fuzz
