// Slice segment header (7.3.6) with pred_weight_table, ref_pic_lists_modification and
// entry points.
#pragma once
#include <array>
#include <cstdint>
#include <vector>

#include "hevc/ps.h"

namespace bitsr {

enum SliceType { SLICE_B = 0, SLICE_P = 1, SLICE_I = 2 };

// clang-format off: grouped by kind (VCL, IRAP VCL, non-VCL), as in Table 7-1
enum NalType {
  NAL_TRAIL_N = 0, NAL_TRAIL_R = 1, NAL_TSA_N = 2, NAL_TSA_R = 3, NAL_STSA_N = 4, NAL_STSA_R = 5,
  NAL_RADL_N = 6, NAL_RADL_R = 7, NAL_RASL_N = 8, NAL_RASL_R = 9,
  NAL_BLA_W_LP = 16, NAL_BLA_W_RADL = 17, NAL_BLA_N_LP = 18, NAL_IDR_W_RADL = 19, NAL_IDR_N_LP = 20, NAL_CRA = 21,
  NAL_VPS = 32, NAL_SPS = 33, NAL_PPS = 34, NAL_AUD = 35, NAL_EOS = 36, NAL_EOB = 37, NAL_FD = 38,
  NAL_SEI_PREFIX = 39, NAL_SEI_SUFFIX = 40,
};
// clang-format on

inline bool is_irap(int t) { return t >= 16 && t <= 23; }
inline bool is_idr(int t) { return t == NAL_IDR_W_RADL || t == NAL_IDR_N_LP; }
inline bool is_bla(int t) { return t >= NAL_BLA_W_LP && t <= NAL_BLA_N_LP; }
inline bool is_rasl(int t) { return t == NAL_RASL_N || t == NAL_RASL_R; }
inline bool is_radl(int t) { return t == NAL_RADL_N || t == NAL_RADL_R; }
// Sub-layer non-reference picture (7.4.2.2): even types below 16 (reserved ones included).
inline bool is_slnr(int t) { return t < 16 && (t & 1) == 0 && t <= 14; }

struct PredWeightTable {
  int luma_log2_weight_denom = 0, chroma_log2_weight_denom = 0;
  // [list][ref_idx]: LumaWeightLX, luma_offset_lX, ChromaWeightLX[c], ChromaOffsetLX[c]
  std::array<std::array<int16_t, 16>, 2> luma_weight{}, luma_offset{};
  std::array<std::array<std::array<int16_t, 2>, 16>, 2> chroma_weight{}, chroma_offset{};
  std::array<std::array<uint8_t, 16>, 2> luma_weight_flag{}, chroma_weight_flag{};
};

struct SliceHeader {
  bool first_slice_segment_in_pic_flag = false;
  bool no_output_of_prior_pics_flag = false;
  int pps_id = 0;
  bool dependent_slice_segment_flag = false;
  int slice_segment_address = 0;
  int slice_type = SLICE_I;
  bool pic_output_flag = true;
  int colour_plane_id = 0;
  int slice_pic_order_cnt_lsb = 0;
  bool short_term_ref_pic_set_sps_flag = false;
  int short_term_ref_pic_set_idx = 0;
  ShortTermRps st_rps_slice;  // the active short-term RPS (coded here or copied from the SPS)
  int num_long_term_sps = 0, num_long_term_pics = 0;
  std::array<int32_t, 33> poc_lsb_lt{};
  std::array<uint8_t, 33> used_by_curr_pic_lt{};
  std::array<uint8_t, 33> delta_poc_msb_present_flag{};
  std::array<int32_t, 33> delta_poc_msb_cycle_lt{};  // accumulated DeltaPocMsbCycleLt
  bool slice_temporal_mvp_enabled_flag = false;
  bool slice_sao_luma_flag = false, slice_sao_chroma_flag = false;
  int num_ref_idx_active[2] = {0, 0};
  bool ref_pic_list_modification_flag[2] = {false, false};
  std::array<std::array<uint8_t, 16>, 2> list_entry{};
  bool mvd_l1_zero_flag = false;
  bool cabac_init_flag = false;
  bool collocated_from_l0_flag = true;
  int collocated_ref_idx = 0;
  PredWeightTable pwt;
  int max_num_merge_cand = 5;
  int slice_qp_delta = 0;
  int slice_cb_qp_offset = 0, slice_cr_qp_offset = 0;
  bool cu_chroma_qp_offset_enabled_flag = false;
  bool deblocking_filter_override_flag = false;
  bool slice_deblocking_filter_disabled_flag = false;
  int beta_offset_div2 = 0, tc_offset_div2 = 0;
  bool slice_loop_filter_across_slices_enabled_flag = false;
  int num_entry_point_offsets = 0;
  std::vector<uint32_t> entry_point_offset;  // entry_point_offset_minus1 + 1, escaped bytes
  // derived
  int SliceQpY = 26;
  int NumPicTotalCurr = 0;
  size_t header_bits = 0;  // size of the header in the RBSP, byte aligned
};

// Parses the slice segment header up to and including byte_alignment(). For a dependent
// slice segment, fields of the independent header are copied from `prev` first.
// `nal_type` is the NAL unit type; `params` the parameter sets selected by slice_pic_parameter_set_id
// (looked up through `lookup_pps`).
struct ParamSetLookup {
  virtual ActiveParams activate(int pps_id) = 0;
  virtual ~ParamSetLookup() = default;
};

void parse_slice_header(BitReader& br, int nal_type, ParamSetLookup& lookup, const SliceHeader* prev,
                        const Limits& limits, SliceHeader& sh, ActiveParams& params);

}  // namespace bitsr
