// residual_coding() (7.3.8.11): every coefficient syntax element is consumed, with the
// context selection of 9.3.4.2.4-9.3.4.2.7 and the Rice parameter derivation of 9.3.3.11
// (including persistent_rice_adaptation and the limited prefix of extended precision).
#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "hevc/slice_decoder.h"

namespace bitsr {

namespace {
// Set bits of a 16-bit mask, inline: without -mpopcnt (the baseline x86-64 build),
// __builtin_popcount is a call into libgcc.
inline int popcount16(uint32_t v) {
  v = v - ((v >> 1) & 0x5555u);
  v = (v & 0x3333u) + ((v >> 2) & 0x3333u);
  v = (v + (v >> 4)) & 0x0F0Fu;
  return (int)((v + (v >> 8)) & 0x1Fu);
}
}  // namespace

namespace {

struct ScanTables {
  // [log2 block size 0..3][scanIdx][pos] -> x | (y << 4)
  uint8_t pos[4][3][64];
  ScanTables() {
    for (int l = 0; l < 4; ++l) {
      const int n = 1 << l;
      // up-right diagonal (6.5.3)
      int i = 0, x = 0, y = 0;
      bool stop = false;
      while (!stop) {
        while (y >= 0) {
          if (x < n && y < n) pos[l][0][i++] = (uint8_t)(x | (y << 4));
          y--;
          x++;
        }
        y = x;
        x = 0;
        if (i >= n * n) stop = true;
      }
      // horizontal (6.5.4) and vertical (6.5.5)
      i = 0;
      for (int yy = 0; yy < n; ++yy)
        for (int xx = 0; xx < n; ++xx) pos[l][1][i++] = (uint8_t)(xx | (yy << 4));
      i = 0;
      for (int xx = 0; xx < n; ++xx)
        for (int yy = 0; yy < n; ++yy) pos[l][2][i++] = (uint8_t)(xx | (yy << 4));
    }
  }
};
const ScanTables kScan;

const uint8_t kCtxIdxMap[16] = {0, 1, 4, 5, 2, 3, 4, 5, 6, 6, 8, 8, 7, 7, 8, 8};

// Escapes above 2^30 cannot be valid (coefficients stay below 2^22 even with extended
// precision); bounding them keeps the Rice/StatCoeff arithmetic inside an int.
int checked_escape(int64_t v) {
  if (v > (1 << 30)) fail("coeff_abs_level_remaining", "coeff_abs_level_remaining out of range");
  return (int)v;
}

// sigCtx inside a sub-block of a TB larger than 4x4 (9.3.4.2.5), by prevCsbf and the
// position (xP, yP) within the sub-block, indexed [prevCsbf][(yP << 2) + xP].
struct SigPattern {
  uint8_t v[4][16];
  SigPattern() {
    for (int pc = 0; pc < 4; ++pc)
      for (int yp = 0; yp < 4; ++yp)
        for (int xp = 0; xp < 4; ++xp) {
          int c;
          if (pc == 0)
            c = (xp + yp == 0) ? 2 : (xp + yp < 3) ? 1 : 0;
          else if (pc == 1)
            c = yp == 0 ? 2 : yp == 1 ? 1 : 0;
          else if (pc == 2)
            c = xp == 0 ? 2 : xp == 1 ? 1 : 0;
          else
            c = 2;
          v[pc][(yp << 2) + xp] = (uint8_t)c;
        }
  }
};
const SigPattern kSigPattern;

// The same contexts in coefficient scan order, as bit shifts into 8 consecutive context states
// loaded as one word (the sig_coeff_flag loop keeps them in a register): [scanIdx][prevCsbf][n]
// for the pattern of a TB larger than 4x4 (sigCtx 0..2 above its base), and [scanIdx][n] for
// a 4x4 TB (ctxIdxMap 1..8 for n >= 1; n = 0 is the DC, decoded on its own).
struct SigScan {
  uint8_t pat[3][4][16];
  uint8_t map4[3][16];
  SigScan() {
    for (int sc = 0; sc < 3; ++sc)
      for (int n = 0; n < 16; ++n) {
        const int pos = kScan.pos[2][sc][n];
        const int idx = ((pos >> 4) << 2) + (pos & 15);
        map4[sc][n] = (uint8_t)(n == 0 ? 0 : (kCtxIdxMap[idx] - 1) * 8);
        for (int pc = 0; pc < 4; ++pc) pat[sc][pc][n] = (uint8_t)(kSigPattern.v[pc][idx] * 8);
      }
  }
};
const SigScan kSigScan;
const uint8_t kNoShift[16] = {};

}  // namespace

// Inline on the caller's local engine, so the engine stays in registers across escapes.
__attribute__((always_inline)) inline int coeff_abs_level_remaining(CabacEngine& eng_, const Sps& sps_, int rice) {
  int prefix = 0;
  if (!sps_.extended_precision_processing_flag) {
    while (prefix < 32 && eng_.bypass()) ++prefix;
    if (prefix <= 3) return checked_escape(((int64_t)prefix << rice) + eng_.bypass_bits(rice));
    const int nbits = prefix - 3 + rice;
    if (nbits > 30) fail("coeff_abs_level_remaining", "coeff_abs_level_remaining is too long");
    int64_t v = (((int64_t)1 << (prefix - 3)) + 2) << rice;
    v += eng_.bypass_bits(nbits);
    if (v > (1 << 30)) fail("coeff_abs_level_remaining", "coeff_abs_level_remaining out of range");
    return (int)v;
  }
  // Limited prefix (extended_precision_processing_flag): the escape is at most
  // log2TransformRange bits long.
  const int range = std::max(15, sps_.bit_depth_luma + 6);
  const int max_prefix_ext = 32 - (3 + range);
  const int longest = max_prefix_ext + 3;
  while (prefix < longest && eng_.bypass()) ++prefix;
  if (prefix < 3) return checked_escape(((int64_t)prefix << rice) + eng_.bypass_bits(rice));
  const int prefix_ext = prefix - 3;
  const int suffix_len = prefix_ext == max_prefix_ext ? range - rice : prefix_ext;
  if (suffix_len + rice > 31 || suffix_len < 0) fail("coeff_abs_level_remaining");
  int64_t v = ((((int64_t)1 << prefix_ext) - 1) + 3) << rice;
  v += eng_.bypass_bits(suffix_len + rice);
  return checked_escape(v);
}

void SliceDecoder::residual_coding(int x0, int y0, int log2_size, int c) {
  const bool bypass = cu_transquant_bypass_;
  bool ts = false;
  if (pps_.transform_skip_enabled_flag && !bypass && log2_size <= pps_.log2_max_transform_skip_block_size)
    ts = dec(ctx::TRANSFORM_SKIP_FLAG + (c ? 1 : 0));
  bool explicit_rdpcm = false;
  if (cu_pred_mode_ != PM_INTRA && sps_.explicit_rdpcm_enabled_flag && (ts || bypass)) {
    explicit_rdpcm = dec(ctx::EXPLICIT_RDPCM_FLAG + (c ? 1 : 0));
    if (explicit_rdpcm) dec(ctx::EXPLICIT_RDPCM_DIR_FLAG + (c ? 1 : 0));
  }
  // last_sig_coeff_{x,y}_prefix / suffix
  const int cmax = (log2_size << 1) - 1;
  int off, shift;
  if (c == 0) {
    off = 3 * (log2_size - 2) + ((log2_size - 1) >> 2);
    shift = (log2_size + 1) >> 2;
  } else {
    off = 15;
    shift = log2_size - 2;
  }
  int px = 0, py = 0;
  while (px < cmax && dec(ctx::LAST_X_PREFIX + off + (px >> shift))) ++px;
  while (py < cmax && dec(ctx::LAST_Y_PREFIX + off + (py >> shift))) ++py;
  int last_x = px, last_y = py;
  if (px > 3) {
    const int nb = (px >> 1) - 1;
    last_x = (1 << nb) * (2 + (px & 1)) + (int)eng_.bypass_bits(nb);
  }
  if (py > 3) {
    const int nb = (py >> 1) - 1;
    last_y = (1 << nb) * (2 + (py & 1)) + (int)eng_.bypass_bits(nb);
  }
  // scanIdx (7.4.9.11)
  int scan_idx = 0;
  int pred_mode_intra = -1;
  if (cu_pred_mode_ == PM_INTRA) {
    pred_mode_intra = c == 0 ? intra_mode_y_[luma_pu_index_at(x0, y0)] : intra_mode_c_[pu_index_at(x0, y0)];
    if (log2_size == 2 || (log2_size == 3 && (c == 0 || sps_.ChromaArrayType == 3))) {
      if (pred_mode_intra >= 6 && pred_mode_intra <= 14)
        scan_idx = 2;
      else if (pred_mode_intra >= 22 && pred_mode_intra <= 30)
        scan_idx = 1;
    }
  }
  if (scan_idx == 2) std::swap(last_x, last_y);
  const int tb = 1 << log2_size;
  if (last_x >= tb || last_y >= tb) fail("last_sig_coeff_prefix", "last significant coefficient outside the block");

  const int lsb = log2_size - 2;  // log2 of the sub-block grid size
  const int sbw = 1 << lsb;
  const uint8_t* sb_scan = kScan.pos[lsb][scan_idx];
  const uint8_t* c_scan = kScan.pos[2][scan_idx];
  // locate the last sub-block and scan position
  int last_sb = 0, last_pos = 0;
  {
    const int xs = last_x >> 2, ys = last_y >> 2;
    const uint8_t key = (uint8_t)(xs | (ys << 4));
    for (int i = 0; i < sbw * sbw; ++i)
      if (sb_scan[i] == key) {
        last_sb = i;
        break;
      }
    const uint8_t kp = (uint8_t)((last_x & 3) | ((last_y & 3) << 4));
    for (int n = 0; n < 16; ++n)
      if (c_scan[n] == kp) {
        last_pos = n;
        break;
      }
  }
  uint8_t csbf[8][8] = {};
  const bool ts_ctx = sps_.transform_skip_context_enabled_flag && (ts || bypass);
  const bool sign_hiding_off = bypass ||
                               (cu_pred_mode_ == PM_INTRA && sps_.implicit_rdpcm_enabled_flag && ts &&
                                (pred_mode_intra == 10 || pred_mode_intra == 26)) ||
                               explicit_rdpcm;
  const int sb_type = (c == 0 ? 2 : 0) + ((ts || bypass) ? 1 : 0);
  int c1 = 1;  // greater1Ctx carried between sub-blocks
  // The engine as a local for the sub-block loop: its offset and range stay in registers
  // rather than being stored and reloaded around every bin (eng_ is a member). A fail()
  // below leaves eng_ behind; nothing reads it once a slice's parse has thrown.
  CabacEngine e = eng_;
  for (int i = last_sb; i >= 0; --i) {
    const int xs = sb_scan[i] & 15, ys = sb_scan[i] >> 4;
    bool infer_dc = false;
    int coded = 1;
    if (i < last_sb && i > 0) {
      int cctx = 0;
      if (xs < sbw - 1) cctx += csbf[xs + 1][ys];
      if (ys < sbw - 1) cctx += csbf[xs][ys + 1];
      coded = e.decode_flat(cc_.m[ctx::CODED_SUB_BLOCK_FLAG + std::min(cctx, 1) + (c ? 2 : 0)]);
      infer_dc = true;
    }
    csbf[xs][ys] = (uint8_t)coded;
    uint32_t sig = 0;
    int n_start = 15;
    if (i == last_sb) {
      sig = 1u << last_pos;
      n_start = last_pos - 1;
    }
    if (coded) {
      const int prev_csbf = ((xs < sbw - 1) ? csbf[xs + 1][ys] : 0) | (((ys < sbw - 1) ? csbf[xs][ys + 1] : 0) << 1);
      // The contexts of this sub-block's positions (9.3.4.2.5): up to 8 consecutive states
      // from `lo`, held in one register through the loop (a state stored and loaded again
      // by the next bin of the same context would sit on the decoding's critical path),
      // and the DC's context.
      ContextModel* sig_ctx = &cc_.m[ctx::SIG_COEFF_FLAG];
      int lo, ctx0;
      const uint8_t* shift;
      if (ts_ctx) {
        lo = ctx0 = c == 0 ? 42 : 27 + 16;
        shift = kNoShift;
      } else if (log2_size == 2) {
        ctx0 = c ? 27 : 0;
        lo = ctx0 + 1;
        shift = kSigScan.map4[scan_idx];
      } else {
        if (c == 0)
          lo = ((xs > 0 || ys > 0) ? 3 : 0) + (log2_size == 3 ? (scan_idx == 0 ? 9 : 15) : 21);
        else
          lo = 27 + (log2_size == 3 ? 9 : 12);
        shift = kSigScan.pat[scan_idx][prev_csbf];
        ctx0 = (xs == 0 && ys == 0) ? (c ? 27 : 0) : lo + (shift[0] >> 3);  // DC of the TB: sigCtx 0
      }
      static_assert(ctx::SIG_COEFF_FLAG + 43 + 8 <= ctx::NUM, "8 states from the last base");
      uint64_t states;
      std::memcpy(&states, sig_ctx + lo, 8);
      // (no branch on the flag either: it is as unpredictable)
      uint32_t found = 0;
      if (n_start > 0) {
        int k = shift[n_start];
        unsigned st = (unsigned)(states >> k) & 0xff;
        for (int n = n_start;; --n) {
          found |= (uint32_t)e.decode_state(st) << n;
          const uint64_t before = states;  // without this bin's new state
          states = (before & ~((uint64_t)0xff << k)) | ((uint64_t)st << k);
          if (n == 1) break;
          // The next bin's state: this one's if it shares the context, else taken from
          // `before`, which does not wait on this bin.
          const int kn = shift[n - 1];
          const uint32_t same = 0u - (uint32_t)(kn == k);
          st = (st & same) | ((unsigned)(before >> kn) & 0xffu & ~same);
          k = kn;
        }
      }
      std::memcpy(sig_ctx + lo, &states, 8);
      sig |= found;
      if (found) infer_dc = false;
      if (n_start >= 0) {
        if (!infer_dc) {
          if (e.decode_flat(sig_ctx[ctx0])) sig |= 1u;
        } else {
          sig |= 1u;  // inferred DC of a coded sub-block with no other significant coefficient
        }
      }
    }
    if (!sig) continue;
    // coeff_abs_level_greater1_flag / greater2_flag
    int ctx_set = (i == 0 || c > 0) ? 0 : 2;
    if (c1 == 0) ctx_set++;
    c1 = 1;
    uint32_t g1 = 0;
    uint32_t first8 = 0;  // the (up to) 8 coefficients with a greater1 flag
    int num_g1 = 0;
    // Only the first 8 significant coefficients (in reverse scan) carry a greater1 flag; loops
    // visit set bits of `sig` only.
    const int nsig = popcount16(sig);
    const int last_sig = 31 - __builtin_clz(sig), first_sig = __builtin_ctz(sig);
    // greater1Ctx after each flag: 0 once a flag was 1, else one more, up to 3 (9.3.4.2.6),
    // computed rather than branched on (the flag is about as unpredictable); the set's 4
    // states are held in a register, as in the sig_coeff_flag loop.
    ContextModel* g1_ctx = &cc_.m[ctx::GREATER1_FLAG + ctx_set * 4 + (c ? 16 : 0)];
    uint32_t g1_states;
    std::memcpy(&g1_states, g1_ctx, 4);
    for (uint32_t rest = sig; rest && num_g1 < 8; ++num_g1) {
      const int n = 31 - __builtin_clz(rest);
      rest &= ~(1u << n);
      const int k = c1 * 8;
      unsigned st = (g1_states >> k) & 0xff;
      const int f = e.decode_state(st);
      g1_states = (g1_states & ~(0xffu << k)) | (st << k);
      g1 |= (uint32_t)f << n;
      first8 |= 1u << n;
      const int up = c1 + ((unsigned)(c1 - 1) < 2u);  // 0 stays 0, 1 -> 2, 2 -> 3, 3 -> 3
      c1 = up & (f - 1);
    }
    std::memcpy(g1_ctx, &g1_states, 4);
    // Coefficients with a coeff_abs_level_remaining, where baseLevel reaches its threshold:
    // those past the first 8 (baseLevel 1), those with greater1 = 1 but the first (2), and
    // the first if its greater2 is 1 (3). As masks, so the loop below visits only escapes.
    uint32_t esc = sig & ~first8;
    uint32_t g2_bit = 0;
    if (g1) {
      g2_bit = 1u << (31 - __builtin_clz(g1));  // the first in reverse scan order
      esc |= g1 & ~g2_bit;
      if (!e.decode_flat(cc_.m[ctx::GREATER2_FLAG + ctx_set + (c ? 4 : 0)])) g2_bit = 0;
      esc |= g2_bit;
    }
    const bool escape = esc != 0;
    const bool sign_hidden = !sign_hiding_off && pps_.sign_data_hiding_enabled_flag && (last_sig - first_sig > 3);
    if (sps_.cabac_bypass_alignment_enabled_flag && escape) e.align_bypass();
    e.bypass_bits(nsig - (sign_hidden ? 1 : 0));
    // coeff_abs_level_remaining
    int rice = sps_.persistent_rice_adaptation_enabled_flag ? cc_.stat_coeff[sb_type] / 4 : 0;
    bool first_rem = true;
    for (uint32_t rest = esc; rest;) {
      const int n = 31 - __builtin_clz(rest);
      rest &= ~(1u << n);
      const uint32_t bit = 1u << n;
      const int base = (first8 & bit) ? ((g2_bit & bit) ? 3 : 2) : 1;
      const int rem = coeff_abs_level_remaining(e, sps_, rice);
      if (sps_.persistent_rice_adaptation_enabled_flag && first_rem) {
        int& s = cc_.stat_coeff[sb_type];
        if (rem >= (3 << (s / 4)))
          s++;
        else if (2 * (int64_t)rem < (1 << (s / 4)) && s > 0)
          s--;
        first_rem = false;
      }
      if (base + rem > ((int64_t)3 << rice))
        rice = sps_.persistent_rice_adaptation_enabled_flag ? rice + 1 : std::min(rice + 1, 4);
      if (rice > 30) fail("coeff_abs_level_remaining", "Rice parameter out of range");
    }
  }
  eng_ = e;
}

}  // namespace bitsr
