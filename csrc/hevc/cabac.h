// CABAC (9.3): arithmetic decoding engine (regular, bypass, terminate) and the context
// variables of every syntax element. The engine keeps the offset above 17 look-ahead bits
// and loads bytes in pairs; the number of bits the standard's decoder has consumed is kept
// exact, so the byte position at a terminate bin is known (PCM, where slice data ends).
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace bitsr {

namespace ctx {
// Offsets of each syntax element's contexts in the context table.
enum : int {
  SAO_MERGE = 0,
  SAO_TYPE_IDX = SAO_MERGE + 1,
  SPLIT_CU_FLAG = SAO_TYPE_IDX + 1,
  CU_TRANSQUANT_BYPASS_FLAG = SPLIT_CU_FLAG + 3,
  CU_SKIP_FLAG = CU_TRANSQUANT_BYPASS_FLAG + 1,
  PRED_MODE_FLAG = CU_SKIP_FLAG + 3,
  PART_MODE = PRED_MODE_FLAG + 1,
  PREV_INTRA_LUMA_PRED_FLAG = PART_MODE + 4,
  INTRA_CHROMA_PRED_MODE = PREV_INTRA_LUMA_PRED_FLAG + 1,
  RQT_ROOT_CBF = INTRA_CHROMA_PRED_MODE + 1,
  MERGE_FLAG = RQT_ROOT_CBF + 1,
  MERGE_IDX = MERGE_FLAG + 1,
  INTER_PRED_IDC = MERGE_IDX + 1,
  REF_IDX = INTER_PRED_IDC + 5,
  MVP_FLAG = REF_IDX + 2,
  SPLIT_TRANSFORM_FLAG = MVP_FLAG + 1,
  CBF_LUMA = SPLIT_TRANSFORM_FLAG + 3,
  CBF_CHROMA = CBF_LUMA + 2,
  ABS_MVD_GREATER0 = CBF_CHROMA + 5,
  ABS_MVD_GREATER1 = ABS_MVD_GREATER0 + 1,
  CU_QP_DELTA_ABS = ABS_MVD_GREATER1 + 1,
  TRANSFORM_SKIP_FLAG = CU_QP_DELTA_ABS + 2,
  LAST_X_PREFIX = TRANSFORM_SKIP_FLAG + 2,
  LAST_Y_PREFIX = LAST_X_PREFIX + 18,
  CODED_SUB_BLOCK_FLAG = LAST_Y_PREFIX + 18,
  SIG_COEFF_FLAG = CODED_SUB_BLOCK_FLAG + 4,  // 42 regular + 2 transform-skip contexts
  GREATER1_FLAG = SIG_COEFF_FLAG + 44,
  GREATER2_FLAG = GREATER1_FLAG + 24,
  EXPLICIT_RDPCM_FLAG = GREATER2_FLAG + 6,
  EXPLICIT_RDPCM_DIR_FLAG = EXPLICIT_RDPCM_FLAG + 2,
  LOG2_RES_SCALE_ABS = EXPLICIT_RDPCM_DIR_FLAG + 2,
  RES_SCALE_SIGN_FLAG = LOG2_RES_SCALE_ABS + 8,
  CU_CHROMA_QP_OFFSET_FLAG = RES_SCALE_SIGN_FLAG + 2,
  CU_CHROMA_QP_OFFSET_IDX = CU_CHROMA_QP_OFFSET_FLAG + 1,
  NUM = CU_CHROMA_QP_OFFSET_IDX + 1
};
}  // namespace ctx

// (pStateIdx << 1) | valMps in one byte, so a bin needs one table lookup per transition. An
// enum rather than uint8_t: stores through a char type may alias anything, so the compiler
// would reload the engine's offset and range from memory after every bin.
enum class CtxState : uint8_t {};
struct ContextModel {
  CtxState s;
};

// Everything that WPP and dependent slice segments save and restore (9.3.2.3/9.3.2.4).
struct CabacContexts {
  ContextModel m[ctx::NUM];
  int stat_coeff[4];  // StatCoeff for persistent_rice_adaptation
  void init(int init_type, int qp);
};

extern const uint8_t kRangeTabLps[64][4];
extern const uint8_t kTransIdxLps[64];
// Indexed by (the quantised range, ContextModel::s), laid out so that the index is
// st + 2 * (range & 0xC0): rLPS alone in `lps` (a bin's critical path: range -> index -> rLPS
// -> comparison), and beside it the next state after an MPS (bits 0..7) and after an LPS
// (bits 8..15, including the valMps switch at pStateIdx 0) and the renormalising shift after
// an LPS (bits 16..23), loaded in parallel.
struct CabacTables {
  uint8_t lps[4][128];
  uint32_t trans[4][128];
  CabacTables();
};
extern const CabacTables kCabac;

class CabacEngine {
 public:
  void start(const uint8_t* begin, const uint8_t* end) {
    begin_ = begin;
    len_ = (size_t)(end - begin);
    rd_ = 0;
    range_ = 510;
    // 9 offset bits at bits 17..25, then 15 look-ahead bits (bits 0..1 still empty)
    value_ = ((uint64_t)next16() << 10) | ((uint64_t)byte_at(rd_++) << 2);
    bits_needed_ = -14;
  }

  int decode(ContextModel& m) {
    const unsigned st = (unsigned)m.s;
    const size_t i = st + ((range_ & 0xC0) << 1);
    const uint32_t lps = (&kCabac.lps[0][0])[i];
    const uint32_t t = (&kCabac.trans[0][0])[i];
    range_ -= lps;
    const uint64_t scaled = (uint64_t)range_ << kFrac;
    if (value_ < scaled) {
      m.s = (CtxState)(t & 0xff);
      if (range_ < 256) {
        range_ <<= 1;
        value_ <<= 1;
        if (++bits_needed_ == 0) refill();
      }
      return st & 1;
    }
    value_ -= scaled;
    const int nb = (int)(t >> 16);
    value_ <<= nb;
    range_ = lps << nb;
    m.s = (CtxState)((t >> 8) & 0xff);
    bits_needed_ += nb;
    if (bits_needed_ >= 0) refill();
    return !(st & 1);
  }

  // The same bin, branch-free but for the refill: for the coefficient flags, whose MPS/LPS
  // outcome is close to a coin flip on detailed content, a mispredicted branch costs more
  // than computing both paths (7-10% of a high-bitrate parse). Elsewhere bins are mostly
  // MPS and the branches predict well.
  int decode_flat(ContextModel& m) {
    unsigned st = (unsigned)m.s;
    const int bin = decode_state(st);
    m.s = (CtxState)st;
    return bin;
  }

  // decode_flat on a state the caller holds (in a register, in the coefficient loops, where
  // the state would otherwise go through memory between consecutive bins of one context).
  int decode_state(unsigned& st) {
    const size_t i = st + ((range_ & 0xC0) << 1);
    const uint32_t lps = (&kCabac.lps[0][0])[i];
    const uint32_t t = (&kCabac.trans[0][0])[i];
    const uint32_t rmps = range_ - lps;
    const uint64_t scaled = (uint64_t)rmps << kFrac;
    // Both outcomes are prepared before the comparison, so only selects wait on it: after
    // an MPS the range needs at most one shift (rMPS >= 128), after an LPS the table has it.
    uint32_t nb = (rmps >> 8) ^ 1;
    uint32_t r = rmps << nb;
    uint32_t next = t & 0xff;
    const uint32_t nb_lps = t >> 16, r_lps = lps << nb_lps, next_lps = (t >> 8) & 0xff;
    uint64_t sub = 0;
    const int bin = (int)((st & 1) ^ (value_ >= scaled));
#if defined(__x86_64__)
    // conditional moves: GCC would branch on some of these selects, and the outcome is
    // close to a coin flip here
    __asm__(
        "cmp %[sc], %[v]\n\t"
        "cmovae %[rl], %[r]\n\t"
        "cmovae %[nl], %[nx]\n\t"
        "cmovae %[bl], %[nb]\n\t"
        "cmovae %[sc], %[sub]"
        : [r] "+r"(r), [nx] "+r"(next), [nb] "+r"(nb), [sub] "+r"(sub)
        : [v] "r"(value_), [sc] "r"(scaled), [rl] "r"(r_lps), [nl] "r"(next_lps), [bl] "r"(nb_lps)
        : "cc");
#else
    const uint32_t m32 = 0u - (uint32_t)(value_ >= scaled);
    r ^= (r ^ r_lps) & m32;
    next ^= (next ^ next_lps) & m32;
    nb ^= (nb ^ nb_lps) & m32;
    sub = scaled & ((uint64_t)0 - (value_ >= scaled));
#endif
    st = next;
    range_ = r;
    value_ = (value_ - sub) << nb;
    bits_needed_ += (int)nb;
    if (bits_needed_ >= 0) refill();
    return bin;
  }

  int bypass() {
    value_ <<= 1;
    if (++bits_needed_ >= 0) refill();
    const uint64_t scaled = (uint64_t)range_ << kFrac;
    if (value_ >= scaled) {
      value_ -= scaled;
      return 1;
    }
    return 0;
  }

  // n bypass bins, first one most significant (n <= 32).
  uint32_t bypass_bits(int n) {
    uint32_t v = 0;
    while (n > 16) {
      v = (v << 16) | bypass_div(16);
      n -= 16;
    }
    if (n > 1) return (v << n) | bypass_div(n);
    if (n == 1) v = (v << 1) | (uint32_t)bypass();
    return v;
  }

  int terminate() {
    range_ -= 2;
    if (value_ >= ((uint64_t)range_ << kFrac)) return 1;
    if (range_ < 256) {
      range_ <<= 1;
      value_ <<= 1;
      if (++bits_needed_ == 0) refill();
    }
    return 0;
  }

  // After a terminate bin equal to 1: the bit that follows the arithmetic codeword must be
  // 1 and the rest of its byte 0 (rbsp_stop_one_bit / end_of_subset_one_bit alignment, or
  // the PCM alignment). Returns false if that pattern is absent.
  bool check_stop_pattern() const {
    // The decoder has consumed `p` bits (9.3.2.5: 9 at initialisation, one per renormalising
    // shift); the last of them, offset bit 0 of the terminate bin, is followed by the stop bit.
    const size_t p = consumed_bits();
    const size_t bytes = (p + 7) / 8;  // bytes a byte-wise reader would have loaded
    if (bytes == 0 || bytes > len_) return false;
    const int used_in_last = (int)(p - (bytes - 1) * 8);  // 1..8 bits of the last byte
    const uint8_t last = begin_[bytes - 1];
    return ((uint32_t)(last << (used_in_last - 1)) & 0xff) == 0x80;
  }
  // Byte where data continues after a terminate bin equal to 1 (PCM samples, next substream).
  const uint8_t* position() const { return begin_ + std::min(len_, (consumed_bits() + 7) / 8); }
  const uint8_t* end() const { return begin_ + len_; }
  // More than 2 bytes past the data would have been needed (as a byte-wise reader counts).
  bool overrun() const { return (consumed_bits() + 7) / 8 > len_ + 2; }
  // Forces range to 256 (cabac_bypass_alignment_enabled_flag, 9.3.4.3.6).
  void align_bypass() { range_ = 256; }

 private:
  // The offset sits above kFrac fraction bits; bits_needed_ = (empty low bits) - 16, and a
  // refill loads 16 bits whenever 16 are empty, so bytes are fetched in pairs.
  static constexpr int kFrac = 17;

  size_t consumed_bits() const { return rd_ * 8 + bits_needed_ - 1; }
  void refill() {
    value_ |= (uint64_t)next16() << bits_needed_;
    bits_needed_ -= 16;
  }
  // n <= 16 bypass bins at once: they are the binary digits of offset / range, so one
  // division (the offset shifted by n, its low bits exact after the refill) replaces n
  // compare-and-subtract steps; measured faster from 2 bins on (sign bits, escape suffixes).
  uint32_t bypass_div(int n) {
    value_ <<= n;
    bits_needed_ += n;
    if (bits_needed_ >= 0) refill();
    const uint64_t scaled = (uint64_t)range_ << kFrac;
    const uint64_t q = value_ / scaled;
    value_ -= q * scaled;
    // q < 2^n while offset < range, which a conforming slice keeps from its first 9 bits on
    // (ivlOffset != 510, 511); a damaged one may not, and callers index tables by the bins.
    return (uint32_t)q & ((1u << n) - 1);
  }
  uint8_t byte_at(size_t i) const { return i < len_ ? begin_[i] : 0; }  // zeros past the end
  uint32_t next16() {
    uint32_t v;
    if (rd_ + 2 <= len_) {
      v = (uint32_t)begin_[rd_] << 8 | begin_[rd_ + 1];
    } else {
      v = (uint32_t)byte_at(rd_) << 8 | byte_at(rd_ + 1);
    }
    rd_ += 2;
    return v;
  }

  const uint8_t* begin_ = nullptr;
  size_t len_ = 0;
  size_t rd_ = 0;  // bytes loaded into value_, zeros past the end included
  uint64_t value_ = 0;
  uint32_t range_ = 510;
  int bits_needed_ = -14;
};

}  // namespace bitsr
