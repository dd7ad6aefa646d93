#include "hevc/ps.h"

#include <algorithm>
#include <deque>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"

namespace bitsr {

void parse_profile_tier_level(BitReader& br, bool profile_present, int max_sub_layers_minus1, ProfileTierLevel& ptl) {
  if (profile_present) {
    ptl.general_profile_space = br.u(2, "general_profile_space");
    ptl.general_tier_flag = br.flag("general_tier_flag");
    ptl.general_profile_idc = br.u(5, "general_profile_idc");
    ptl.general_profile_compatibility_flags = br.u(32, "general_profile_compatibility_flag");
    ptl.general_progressive_source_flag = br.flag("general_progressive_source_flag");
    ptl.general_interlaced_source_flag = br.flag("general_interlaced_source_flag");
    ptl.general_non_packed_constraint_flag = br.flag("general_non_packed_constraint_flag");
    ptl.general_frame_only_constraint_flag = br.flag("general_frame_only_constraint_flag");
    uint64_t hi = br.u(32, "general_reserved_zero_43bits");
    uint64_t lo = br.u(12, "general_reserved_zero_43bits");
    ptl.general_constraint_bits = (hi << 12) | lo;
  }
  ptl.general_level_idc = br.u(8, "general_level_idc");
  bool sub_profile[8] = {}, sub_level[8] = {};
  for (int i = 0; i < max_sub_layers_minus1; ++i) {
    sub_profile[i] = br.flag("sub_layer_profile_present_flag");
    sub_level[i] = br.flag("sub_layer_level_present_flag");
  }
  if (max_sub_layers_minus1 > 0)
    for (int i = max_sub_layers_minus1; i < 8; ++i) br.skip(2, "reserved_zero_2bits");
  for (int i = 0; i < max_sub_layers_minus1; ++i) {
    if (sub_profile[i]) br.skip(88, "sub_layer_profile");
    if (sub_level[i]) br.skip(8, "sub_layer_level_idc");
  }
}

static void parse_sub_layer_hrd(BitReader& br, int cpb_cnt, bool sub_pic) {
  for (int j = 0; j < cpb_cnt; ++j) {
    br.ue("bit_rate_value_minus1");
    br.ue("cpb_size_value_minus1");
    if (sub_pic) {
      br.ue("cpb_size_du_value_minus1");
      br.ue("bit_rate_du_value_minus1");
    }
    br.flag("cbr_flag");
  }
}

static void parse_hrd(BitReader& br, bool common_inf, int max_sub_layers_minus1, HrdParameters& hrd) {
  if (common_inf) {
    hrd.nal_hrd_parameters_present_flag = br.flag("nal_hrd_parameters_present_flag");
    hrd.vcl_hrd_parameters_present_flag = br.flag("vcl_hrd_parameters_present_flag");
    if (hrd.nal_hrd_parameters_present_flag || hrd.vcl_hrd_parameters_present_flag) {
      hrd.sub_pic_hrd_params_present_flag = br.flag("sub_pic_hrd_params_present_flag");
      if (hrd.sub_pic_hrd_params_present_flag) {
        br.skip(8, "tick_divisor_minus2");
        br.skip(5, "du_cpb_removal_delay_increment_length_minus1");
        br.skip(1, "sub_pic_cpb_params_in_pic_timing_sei_flag");
        br.skip(5, "dpb_output_delay_du_length_minus1");
      }
      br.skip(4, "bit_rate_scale");
      br.skip(4, "cpb_size_scale");
      if (hrd.sub_pic_hrd_params_present_flag) br.skip(4, "cpb_size_du_scale");
      br.skip(5, "initial_cpb_removal_delay_length_minus1");
      br.skip(5, "au_cpb_removal_delay_length_minus1");
      br.skip(5, "dpb_output_delay_length_minus1");
    }
  }
  for (int i = 0; i <= max_sub_layers_minus1; ++i) {
    bool fixed_general = br.flag("fixed_pic_rate_general_flag");
    bool fixed_within_cvs = true;
    if (!fixed_general) fixed_within_cvs = br.flag("fixed_pic_rate_within_cvs_flag");
    bool low_delay = false;
    if (fixed_within_cvs)
      br.ue_max(2047, "elemental_duration_in_tc_minus1");
    else
      low_delay = br.flag("low_delay_hrd_flag");
    int cpb_cnt = 1;
    if (!low_delay) cpb_cnt = br.ue_max(31, "cpb_cnt_minus1") + 1;
    if (hrd.nal_hrd_parameters_present_flag) parse_sub_layer_hrd(br, cpb_cnt, hrd.sub_pic_hrd_params_present_flag);
    if (hrd.vcl_hrd_parameters_present_flag) parse_sub_layer_hrd(br, cpb_cnt, hrd.sub_pic_hrd_params_present_flag);
  }
}

static void parse_vui(BitReader& br, Sps& sps) {
  Vui& v = sps.vui;
  v.aspect_ratio_info_present_flag = br.flag("aspect_ratio_info_present_flag");
  if (v.aspect_ratio_info_present_flag) {
    v.aspect_ratio_idc = br.u(8, "aspect_ratio_idc");
    if (v.aspect_ratio_idc == 255) {
      v.sar_width = br.u(16, "sar_width");
      v.sar_height = br.u(16, "sar_height");
    }
  }
  if (br.flag("overscan_info_present_flag")) br.flag("overscan_appropriate_flag");
  v.video_signal_type_present_flag = br.flag("video_signal_type_present_flag");
  if (v.video_signal_type_present_flag) {
    v.video_format = br.u(3, "video_format");
    v.video_full_range_flag = br.flag("video_full_range_flag");
    v.colour_description_present_flag = br.flag("colour_description_present_flag");
    if (v.colour_description_present_flag) {
      v.colour_primaries = br.u(8, "colour_primaries");
      v.transfer_characteristics = br.u(8, "transfer_characteristics");
      v.matrix_coeffs = br.u(8, "matrix_coeffs");
    }
  }
  if (br.flag("chroma_loc_info_present_flag")) {
    br.ue_max(5, "chroma_sample_loc_type_top_field");
    br.ue_max(5, "chroma_sample_loc_type_bottom_field");
  }
  br.flag("neutral_chroma_indication_flag");
  v.field_seq_flag = br.flag("field_seq_flag");
  v.frame_field_info_present_flag = br.flag("frame_field_info_present_flag");
  v.default_display_window_flag = br.flag("default_display_window_flag");
  if (v.default_display_window_flag)
    for (int& w : v.def_disp_win) w = (int)br.ue("def_disp_win_offset");
  v.vui_timing_info_present_flag = br.flag("vui_timing_info_present_flag");
  if (v.vui_timing_info_present_flag) {
    v.num_units_in_tick = br.u(32, "vui_num_units_in_tick");
    v.time_scale = br.u(32, "vui_time_scale");
    if (br.flag("vui_poc_proportional_to_timing_flag")) br.ue("vui_num_ticks_poc_diff_one_minus1");
    v.vui_hrd_parameters_present_flag = br.flag("vui_hrd_parameters_present_flag");
    if (v.vui_hrd_parameters_present_flag) parse_hrd(br, true, sps.max_sub_layers - 1, v.hrd);
  }
  if (br.flag("bitstream_restriction_flag")) {
    br.flag("tiles_fixed_structure_flag");
    br.flag("motion_vectors_over_pic_boundaries_flag");
    br.flag("restricted_ref_pic_lists_flag");
    br.ue_max(4095, "min_spatial_segmentation_idc");
    br.ue_max(16, "max_bytes_per_pic_denom");
    br.ue_max(16, "max_bits_per_min_cu_denom");
    br.ue_max(16, "log2_max_mv_length_horizontal");
    br.ue_max(15, "log2_max_mv_length_vertical");
  }
}

static void parse_scaling_list_data(BitReader& br) {
  // Values matter only for dequantisation, which bitsr does not do; the syntax is consumed
  // and range-checked.
  for (int sizeId = 0; sizeId < 4; ++sizeId) {
    for (int matrixId = 0; matrixId < 6; matrixId += (sizeId == 3) ? 3 : 1) {
      bool pred_mode_flag = br.flag("scaling_list_pred_mode_flag");
      if (!pred_mode_flag) {
        br.ue_max(sizeId == 3 ? matrixId / 3 : matrixId, "scaling_list_pred_matrix_id_delta");
      } else {
        int coef_num = std::min(64, 1 << (4 + (sizeId << 1)));
        if (sizeId > 1) br.se_range(-7, 247, "scaling_list_dc_coef_minus8");
        for (int i = 0; i < coef_num; ++i) br.se_range(-128, 127, "scaling_list_delta_coef");
      }
    }
  }
}

void parse_st_ref_pic_set(BitReader& br, int idx, const std::vector<ShortTermRps>& sets, int max_dec_pic_buffering,
                          ShortTermRps& out) {
  out = ShortTermRps();
  bool inter = false;
  if (idx != 0) inter = br.flag("inter_ref_pic_set_prediction_flag");
  if (inter) {
    int delta_idx = 1;
    if (idx == (int)sets.size()) delta_idx = br.ue_max(idx - 1, "delta_idx_minus1") + 1;
    int ref_idx = idx - delta_idx;
    if (ref_idx < 0 || ref_idx >= (int)sets.size()) fail("delta_idx_minus1");
    const ShortTermRps& ref = sets[ref_idx];
    int sign = br.u(1, "delta_rps_sign");
    int abs_delta = br.ue_max(32767, "abs_delta_rps_minus1") + 1;
    int delta_rps = sign ? -abs_delta : abs_delta;
    int n = ref.num_delta_pocs();
    uint8_t used[kMaxRpsEntries + 1], use_delta[kMaxRpsEntries + 1];
    for (int j = 0; j <= n; ++j) {
      used[j] = br.flag("used_by_curr_pic_flag");
      use_delta[j] = used[j] ? 1 : br.flag("use_delta_flag");
    }
    int i = 0;
    auto push0 = [&](int dpoc, uint8_t u) {
      if (i >= kMaxRpsEntries) fail("st_ref_pic_set", "short-term RPS has more than 16 entries");
      out.delta_poc_s0[i] = dpoc;
      out.used_s0[i++] = u;
    };
    for (int j = ref.num_positive - 1; j >= 0; --j) {
      int d = ref.delta_poc_s1[j] + delta_rps;
      if (d < 0 && use_delta[ref.num_negative + j]) push0(d, used[ref.num_negative + j]);
    }
    if (delta_rps < 0 && use_delta[n]) push0(delta_rps, used[n]);
    for (int j = 0; j < ref.num_negative; ++j) {
      int d = ref.delta_poc_s0[j] + delta_rps;
      if (d < 0 && use_delta[j]) push0(d, used[j]);
    }
    out.num_negative = i;
    i = 0;
    auto push1 = [&](int dpoc, uint8_t u) {
      if (i + out.num_negative >= kMaxRpsEntries) fail("st_ref_pic_set", "short-term RPS has more than 16 entries");
      out.delta_poc_s1[i] = dpoc;
      out.used_s1[i++] = u;
    };
    for (int j = ref.num_negative - 1; j >= 0; --j) {
      int d = ref.delta_poc_s0[j] + delta_rps;
      if (d > 0 && use_delta[j]) push1(d, used[j]);
    }
    if (delta_rps > 0 && use_delta[n]) push1(delta_rps, used[n]);
    for (int j = 0; j < ref.num_positive; ++j) {
      int d = ref.delta_poc_s1[j] + delta_rps;
      if (d > 0 && use_delta[ref.num_negative + j]) push1(d, used[ref.num_negative + j]);
    }
    out.num_positive = i;
  } else {
    int maxn = std::min(max_dec_pic_buffering, kMaxRpsEntries);
    out.num_negative = br.ue_max(maxn, "num_negative_pics");
    out.num_positive = br.ue_max(maxn - out.num_negative, "num_positive_pics");
    int poc = 0;
    for (int i = 0; i < out.num_negative; ++i) {
      poc -= (int)br.ue_max(32767, "delta_poc_s0_minus1") + 1;
      out.delta_poc_s0[i] = poc;
      out.used_s0[i] = br.flag("used_by_curr_pic_s0_flag");
    }
    poc = 0;
    for (int i = 0; i < out.num_positive; ++i) {
      poc += (int)br.ue_max(32767, "delta_poc_s1_minus1") + 1;
      out.delta_poc_s1[i] = poc;
      out.used_s1[i] = br.flag("used_by_curr_pic_s1_flag");
    }
  }
}

std::shared_ptr<Vps> parse_vps(BitReader& br) {
  auto vps = std::make_shared<Vps>();
  vps->vps_id = br.u(4, "vps_video_parameter_set_id");
  br.skip(1, "vps_base_layer_internal_flag");
  br.skip(1, "vps_base_layer_available_flag");
  vps->max_layers = br.u(6, "vps_max_layers_minus1") + 1;
  vps->max_sub_layers = br.u(3, "vps_max_sub_layers_minus1") + 1;
  if (vps->max_sub_layers > 7) fail("vps_max_sub_layers_minus1");
  br.skip(1, "vps_temporal_id_nesting_flag");
  br.skip(16, "vps_reserved_0xffff_16bits");
  parse_profile_tier_level(br, true, vps->max_sub_layers - 1, vps->ptl);
  // The rest (ordering info, layer sets, timing) does not affect parsing of the base layer.
  return vps;
}

std::shared_ptr<Sps> parse_sps(BitReader& br, const Limits& limits) {
  auto p = std::make_shared<Sps>();
  Sps& s = *p;
  s.vps_id = br.u(4, "sps_video_parameter_set_id");
  s.max_sub_layers = br.u(3, "sps_max_sub_layers_minus1") + 1;
  if (s.max_sub_layers > 7) fail("sps_max_sub_layers_minus1");
  br.skip(1, "sps_temporal_id_nesting_flag");
  parse_profile_tier_level(br, true, s.max_sub_layers - 1, s.ptl);
  s.sps_id = br.ue_max(15, "sps_seq_parameter_set_id");
  s.chroma_format_idc = br.ue_max(3, "chroma_format_idc");
  if (s.chroma_format_idc == 3) s.separate_colour_plane_flag = br.flag("separate_colour_plane_flag");
  s.ChromaArrayType = s.separate_colour_plane_flag ? 0 : s.chroma_format_idc;
  // Checked as read (unsigned): stored into an int first, 2^31 and more became negative
  // sizes that passed the limit checks.
  const uint32_t width = br.ue("pic_width_in_luma_samples");
  const uint32_t height = br.ue("pic_height_in_luma_samples");
  if (width == 0 || height == 0) fail("pic_width_in_luma_samples", "picture size is zero");
  if (width > (uint32_t)limits.max_dimension || height > (uint32_t)limits.max_dimension ||
      (int64_t)width * height > limits.max_luma_samples)
    throw LimitError("picture size " + std::to_string(width) + "x" + std::to_string(height) +
                         " exceeds the configured limit (max_dimension " + std::to_string(limits.max_dimension) +
                         ", max_luma_samples " + std::to_string(limits.max_luma_samples) + ")",
                     "pic_width_in_luma_samples");
  s.width = (int)width;
  s.height = (int)height;
  s.SubWidthC = (s.chroma_format_idc == 1 || s.chroma_format_idc == 2) && !s.separate_colour_plane_flag ? 2 : 1;
  s.SubHeightC = (s.chroma_format_idc == 1) && !s.separate_colour_plane_flag ? 2 : 1;
  if (br.flag("conformance_window_flag")) {
    int sw = s.ChromaArrayType ? s.SubWidthC : 1, sh = s.ChromaArrayType ? s.SubHeightC : 1;
    uint32_t l = br.ue("conf_win_left_offset"), r = br.ue("conf_win_right_offset");
    uint32_t t = br.ue("conf_win_top_offset"), b = br.ue("conf_win_bottom_offset");
    if ((uint64_t)sw * (l + (uint64_t)r) >= (uint64_t)s.width || (uint64_t)sh * (t + (uint64_t)b) >= (uint64_t)s.height)
      fail("conf_win_offset", "conformance window is empty or larger than the picture");
    s.conf_win[0] = sw * l;
    s.conf_win[1] = sw * r;
    s.conf_win[2] = sh * t;
    s.conf_win[3] = sh * b;
  }
  s.bit_depth_luma = br.ue_max(8, "bit_depth_luma_minus8") + 8;
  s.bit_depth_chroma = br.ue_max(8, "bit_depth_chroma_minus8") + 8;
  s.log2_max_poc_lsb = br.ue_max(12, "log2_max_pic_order_cnt_lsb_minus4") + 4;
  bool ordering_info = br.flag("sps_sub_layer_ordering_info_present_flag");
  for (int i = ordering_info ? 0 : s.max_sub_layers - 1; i < s.max_sub_layers; ++i) {
    s.max_dec_pic_buffering[i] = br.ue_max(15, "sps_max_dec_pic_buffering_minus1") + 1;
    s.max_num_reorder[i] = br.ue_max(s.max_dec_pic_buffering[i] - 1, "sps_max_num_reorder_pics");
    // Clamped: SpsMaxLatencyPictures = reorder + this - 1 must not overflow an int.
    s.max_latency_increase_plus1[i] = (int)std::min<uint32_t>(br.ue("sps_max_latency_increase_plus1"), 1u << 30);
  }
  if (!ordering_info)
    for (int i = 0; i < s.max_sub_layers - 1; ++i) {
      s.max_dec_pic_buffering[i] = s.max_dec_pic_buffering[s.max_sub_layers - 1];
      s.max_num_reorder[i] = s.max_num_reorder[s.max_sub_layers - 1];
      s.max_latency_increase_plus1[i] = s.max_latency_increase_plus1[s.max_sub_layers - 1];
    }
  s.log2_min_cb = br.ue_max(3, "log2_min_luma_coding_block_size_minus3") + 3;
  s.log2_ctb = s.log2_min_cb + br.ue_max(3, "log2_diff_max_min_luma_coding_block_size");
  if (s.log2_ctb < 4 || s.log2_ctb > 6)
    fail("log2_diff_max_min_luma_coding_block_size", "CTB size must be 16, 32 or 64");
  s.log2_min_tb = br.ue_max(3, "log2_min_luma_transform_block_size_minus2") + 2;
  if (s.log2_min_tb >= s.log2_min_cb)
    fail("log2_min_luma_transform_block_size_minus2", "min TB size must be smaller than min CB size");
  s.log2_max_tb = s.log2_min_tb + br.ue_max(3, "log2_diff_max_min_luma_transform_block_size");
  if (s.log2_max_tb > 5 || s.log2_max_tb > s.log2_ctb)
    fail("log2_diff_max_min_luma_transform_block_size", "max TB size must be <= min(32, CTB size)");
  s.max_transform_hierarchy_depth_inter = br.ue_max(s.log2_ctb - s.log2_min_tb, "max_transform_hierarchy_depth_inter");
  s.max_transform_hierarchy_depth_intra = br.ue_max(s.log2_ctb - s.log2_min_tb, "max_transform_hierarchy_depth_intra");
  s.scaling_list_enabled_flag = br.flag("scaling_list_enabled_flag");
  if (s.scaling_list_enabled_flag && br.flag("sps_scaling_list_data_present_flag")) parse_scaling_list_data(br);
  s.amp_enabled_flag = br.flag("amp_enabled_flag");
  s.sample_adaptive_offset_enabled_flag = br.flag("sample_adaptive_offset_enabled_flag");
  s.pcm_enabled_flag = br.flag("pcm_enabled_flag");
  if (s.pcm_enabled_flag) {
    s.pcm_bit_depth_luma = br.u(4, "pcm_sample_bit_depth_luma_minus1") + 1;
    s.pcm_bit_depth_chroma = br.u(4, "pcm_sample_bit_depth_chroma_minus1") + 1;
    if (s.pcm_bit_depth_luma > s.bit_depth_luma) fail("pcm_sample_bit_depth_luma_minus1");
    if (s.pcm_bit_depth_chroma > s.bit_depth_chroma) fail("pcm_sample_bit_depth_chroma_minus1");
    s.log2_min_pcm_cb = br.ue_max(2, "log2_min_pcm_luma_coding_block_size_minus3") + 3;
    s.log2_max_pcm_cb = s.log2_min_pcm_cb + br.ue_max(2, "log2_diff_max_min_pcm_luma_coding_block_size");
    if (s.log2_max_pcm_cb > std::min(s.log2_ctb, 5)) fail("log2_diff_max_min_pcm_luma_coding_block_size");
    s.pcm_loop_filter_disabled_flag = br.flag("pcm_loop_filter_disabled_flag");
  }
  int num_st = br.ue_max(64, "num_short_term_ref_pic_sets");
  s.st_rps.reserve(num_st);
  int max_dpb = s.max_dec_pic_buffering[s.max_sub_layers - 1];
  for (int i = 0; i < num_st; ++i) {
    ShortTermRps rps;
    parse_st_ref_pic_set(br, i, s.st_rps, max_dpb, rps);
    s.st_rps.push_back(rps);
  }
  s.long_term_ref_pics_present_flag = br.flag("long_term_ref_pics_present_flag");
  if (s.long_term_ref_pics_present_flag) {
    s.num_long_term_ref_pics_sps = br.ue_max(32, "num_long_term_ref_pics_sps");
    for (int i = 0; i < s.num_long_term_ref_pics_sps; ++i) {
      s.lt_ref_pic_poc_lsb_sps[i] = br.u(s.log2_max_poc_lsb, "lt_ref_pic_poc_lsb_sps");
      s.used_by_curr_pic_lt_sps_flag[i] = br.flag("used_by_curr_pic_lt_sps_flag");
    }
  }
  s.sps_temporal_mvp_enabled_flag = br.flag("sps_temporal_mvp_enabled_flag");
  s.strong_intra_smoothing_enabled_flag = br.flag("strong_intra_smoothing_enabled_flag");
  s.vui_parameters_present_flag = br.flag("vui_parameters_present_flag");
  if (s.vui_parameters_present_flag) parse_vui(br, s);
  if (br.flag("sps_extension_present_flag")) {
    bool range = br.flag("sps_range_extension_flag");
    bool multilayer = br.flag("sps_multilayer_extension_flag");
    bool ext3d = br.flag("sps_3d_extension_flag");
    bool scc = br.flag("sps_scc_extension_flag");
    br.u(4, "sps_extension_4bits");
    if (range) {
      s.transform_skip_rotation_enabled_flag = br.flag("transform_skip_rotation_enabled_flag");
      s.transform_skip_context_enabled_flag = br.flag("transform_skip_context_enabled_flag");
      s.implicit_rdpcm_enabled_flag = br.flag("implicit_rdpcm_enabled_flag");
      s.explicit_rdpcm_enabled_flag = br.flag("explicit_rdpcm_enabled_flag");
      s.extended_precision_processing_flag = br.flag("extended_precision_processing_flag");
      s.intra_smoothing_disabled_flag = br.flag("intra_smoothing_disabled_flag");
      s.high_precision_offsets_enabled_flag = br.flag("high_precision_offsets_enabled_flag");
      s.persistent_rice_adaptation_enabled_flag = br.flag("persistent_rice_adaptation_enabled_flag");
      s.cabac_bypass_alignment_enabled_flag = br.flag("cabac_bypass_alignment_enabled_flag");
    }
    if (multilayer) br.flag("inter_view_mv_vert_constraint_flag");
    if (ext3d)
      throw UnsupportedError("SPS uses the 3D-HEVC extension, which bitsr does not support", "sps_3d_extension_flag");
    if (scc)
      throw UnsupportedError("SPS uses the screen content coding (SCC) extension, which bitsr does not support",
                             "sps_scc_extension_flag");
  }
  // Derived variables (7.4.3.2).
  s.CtbSizeY = 1 << s.log2_ctb;
  s.MinCbSizeY = 1 << s.log2_min_cb;
  if (s.width % s.MinCbSizeY || s.height % s.MinCbSizeY)
    fail("pic_width_in_luma_samples", "picture size is not a multiple of MinCbSizeY");
  s.PicWidthInCtbsY = (s.width + s.CtbSizeY - 1) >> s.log2_ctb;
  s.PicHeightInCtbsY = (s.height + s.CtbSizeY - 1) >> s.log2_ctb;
  s.PicSizeInCtbsY = s.PicWidthInCtbsY * s.PicHeightInCtbsY;
  s.PicWidthInMinCbsY = s.width >> s.log2_min_cb;
  s.PicHeightInMinCbsY = s.height >> s.log2_min_cb;
  s.QpBdOffsetY = 6 * (s.bit_depth_luma - 8);
  s.QpBdOffsetC = 6 * (s.bit_depth_chroma - 8);
  int range_y = s.extended_precision_processing_flag ? std::max(15, s.bit_depth_luma + 6) : 15;
  int range_c = s.extended_precision_processing_flag ? std::max(15, s.bit_depth_chroma + 6) : 15;
  s.CoeffMinY = -(1 << range_y);
  s.CoeffMaxY = (1 << range_y) - 1;
  s.CoeffMinC = -(1 << range_c);
  s.CoeffMaxC = (1 << range_c) - 1;
  s.WpOffsetBdShiftY = s.high_precision_offsets_enabled_flag ? 0 : s.bit_depth_luma - 8;
  s.WpOffsetBdShiftC = s.high_precision_offsets_enabled_flag ? 0 : s.bit_depth_chroma - 8;
  s.WpOffsetHalfRangeY = 1 << (s.high_precision_offsets_enabled_flag ? s.bit_depth_luma - 1 : 7);
  s.WpOffsetHalfRangeC = 1 << (s.high_precision_offsets_enabled_flag ? s.bit_depth_chroma - 1 : 7);
  return p;
}

std::shared_ptr<Pps> parse_pps(BitReader& br) {
  auto p = std::make_shared<Pps>();
  Pps& s = *p;
  s.pps_id = br.ue_max(63, "pps_pic_parameter_set_id");
  s.sps_id = br.ue_max(15, "pps_seq_parameter_set_id");
  s.dependent_slice_segments_enabled_flag = br.flag("dependent_slice_segments_enabled_flag");
  s.output_flag_present_flag = br.flag("output_flag_present_flag");
  s.num_extra_slice_header_bits = br.u(3, "num_extra_slice_header_bits");
  s.sign_data_hiding_enabled_flag = br.flag("sign_data_hiding_enabled_flag");
  s.cabac_init_present_flag = br.flag("cabac_init_present_flag");
  s.num_ref_idx_l0_default_active = br.ue_max(14, "num_ref_idx_l0_default_active_minus1") + 1;
  s.num_ref_idx_l1_default_active = br.ue_max(14, "num_ref_idx_l1_default_active_minus1") + 1;
  s.init_qp_minus26 = br.se_range(-(26 + 48), 25, "init_qp_minus26");  // checked against the SPS at activation
  s.constrained_intra_pred_flag = br.flag("constrained_intra_pred_flag");
  s.transform_skip_enabled_flag = br.flag("transform_skip_enabled_flag");
  s.cu_qp_delta_enabled_flag = br.flag("cu_qp_delta_enabled_flag");
  if (s.cu_qp_delta_enabled_flag) s.diff_cu_qp_delta_depth = br.ue_max(3, "diff_cu_qp_delta_depth");
  s.cb_qp_offset = br.se_range(-12, 12, "pps_cb_qp_offset");
  s.cr_qp_offset = br.se_range(-12, 12, "pps_cr_qp_offset");
  s.slice_chroma_qp_offsets_present_flag = br.flag("pps_slice_chroma_qp_offsets_present_flag");
  s.weighted_pred_flag = br.flag("weighted_pred_flag");
  s.weighted_bipred_flag = br.flag("weighted_bipred_flag");
  s.transquant_bypass_enabled_flag = br.flag("transquant_bypass_enabled_flag");
  s.tiles_enabled_flag = br.flag("tiles_enabled_flag");
  s.entropy_coding_sync_enabled_flag = br.flag("entropy_coding_sync_enabled_flag");
  if (s.tiles_enabled_flag) {
    s.num_tile_columns = br.ue_max(19, "num_tile_columns_minus1") + 1;
    s.num_tile_rows = br.ue_max(21, "num_tile_rows_minus1") + 1;
    s.uniform_spacing_flag = br.flag("uniform_spacing_flag");
    if (!s.uniform_spacing_flag) {
      for (int i = 0; i < s.num_tile_columns - 1; ++i)
        s.column_width_minus1.push_back(br.ue_max(1 << 12, "column_width_minus1"));
      for (int i = 0; i < s.num_tile_rows - 1; ++i)
        s.row_height_minus1.push_back(br.ue_max(1 << 12, "row_height_minus1"));
    }
    s.loop_filter_across_tiles_enabled_flag = br.flag("loop_filter_across_tiles_enabled_flag");
  }
  s.loop_filter_across_slices_enabled_flag = br.flag("pps_loop_filter_across_slices_enabled_flag");
  s.deblocking_filter_control_present_flag = br.flag("deblocking_filter_control_present_flag");
  if (s.deblocking_filter_control_present_flag) {
    s.deblocking_filter_override_enabled_flag = br.flag("deblocking_filter_override_enabled_flag");
    s.pps_deblocking_filter_disabled_flag = br.flag("pps_deblocking_filter_disabled_flag");
    if (!s.pps_deblocking_filter_disabled_flag) {
      s.beta_offset_div2 = br.se_range(-6, 6, "pps_beta_offset_div2");
      s.tc_offset_div2 = br.se_range(-6, 6, "pps_tc_offset_div2");
    }
  }
  if (br.flag("pps_scaling_list_data_present_flag")) parse_scaling_list_data(br);
  s.lists_modification_present_flag = br.flag("lists_modification_present_flag");
  s.log2_parallel_merge_level =
      br.ue_max(4, "log2_parallel_merge_level_minus2") + 2;  // <= CtbLog2SizeY checked at activation
  s.slice_segment_header_extension_present_flag = br.flag("slice_segment_header_extension_present_flag");
  if (br.flag("pps_extension_present_flag")) {
    bool range = br.flag("pps_range_extension_flag");
    bool multilayer = br.flag("pps_multilayer_extension_flag");
    bool ext3d = br.flag("pps_3d_extension_flag");
    bool scc = br.flag("pps_scc_extension_flag");
    br.u(4, "pps_extension_4bits");
    if (range) {
      if (s.transform_skip_enabled_flag)
        s.log2_max_transform_skip_block_size = br.ue_max(3, "log2_max_transform_skip_block_size_minus2") + 2;
      s.cross_component_prediction_enabled_flag = br.flag("cross_component_prediction_enabled_flag");
      s.chroma_qp_offset_list_enabled_flag = br.flag("chroma_qp_offset_list_enabled_flag");
      if (s.chroma_qp_offset_list_enabled_flag) {
        s.diff_cu_chroma_qp_offset_depth = br.ue_max(3, "diff_cu_chroma_qp_offset_depth");
        s.chroma_qp_offset_list_len = br.ue_max(5, "chroma_qp_offset_list_len_minus1") + 1;
        for (int i = 0; i < s.chroma_qp_offset_list_len; ++i) {
          s.cb_qp_offset_list[i] = br.se_range(-12, 12, "cb_qp_offset_list");
          s.cr_qp_offset_list[i] = br.se_range(-12, 12, "cr_qp_offset_list");
        }
      }
      s.log2_sao_offset_scale_luma = br.ue_max(6, "log2_sao_offset_scale_luma");
      s.log2_sao_offset_scale_chroma = br.ue_max(6, "log2_sao_offset_scale_chroma");
    }
    if (multilayer)
      throw UnsupportedError("PPS uses the multi-layer extension, which bitsr does not support",
                             "pps_multilayer_extension_flag");
    if (ext3d)
      throw UnsupportedError("PPS uses the 3D-HEVC extension, which bitsr does not support", "pps_3d_extension_flag");
    if (scc)
      throw UnsupportedError("PPS uses the screen content coding (SCC) extension, which bitsr does not support",
                             "pps_scc_extension_flag");
  }
  return p;
}

namespace {

// The last few maps derived, by geometry. Read-only once made, so decoders on other threads
// may share them.
struct MapCache {
  static constexpr size_t kEntries = 2;
  std::mutex mu;
  std::deque<std::pair<std::vector<int>, std::shared_ptr<const ScanMaps>>> entries;  // newest first
};

MapCache& map_cache() {
  static MapCache* c = new MapCache();  // never destroyed: decoders may outlive static destruction
  return *c;
}

std::shared_ptr<ScanMaps> make_scan_maps(int W, int H, int log2_ctb, const std::vector<int>& colw,
                                         const std::vector<int>& rowh);

}  // namespace

std::shared_ptr<const ScanMaps> derive_scan_maps(const Sps& sps, const Pps& pps) {
  if (pps.init_qp_minus26 < -(26 + sps.QpBdOffsetY)) fail("init_qp_minus26");
  if (pps.log2_parallel_merge_level > sps.log2_ctb) fail("log2_parallel_merge_level_minus2");
  if (pps.diff_cu_qp_delta_depth > sps.log2_ctb - sps.log2_min_cb) fail("diff_cu_qp_delta_depth");
  if (pps.diff_cu_chroma_qp_offset_depth > sps.log2_ctb - sps.log2_min_cb) fail("diff_cu_chroma_qp_offset_depth");
  if (pps.log2_max_transform_skip_block_size > sps.log2_max_tb) fail("log2_max_transform_skip_block_size_minus2");
  const int W = sps.PicWidthInCtbsY, H = sps.PicHeightInCtbsY;
  const int cols = pps.num_tile_columns, rows = pps.num_tile_rows;
  if (cols > W || rows > H) fail("num_tile_columns_minus1", "more tiles than CTBs");
  std::vector<int> colw(cols), rowh(rows);
  if (pps.uniform_spacing_flag) {
    for (int i = 0; i < cols; ++i) colw[i] = ((i + 1) * W) / cols - (i * W) / cols;
    for (int j = 0; j < rows; ++j) rowh[j] = ((j + 1) * H) / rows - (j * H) / rows;
  } else {
    int acc = 0;
    for (int i = 0; i < cols - 1; ++i) {
      colw[i] = pps.column_width_minus1[i] + 1;
      acc += colw[i];
    }
    if (acc >= W) fail("column_width_minus1", "tile columns wider than the picture");
    colw[cols - 1] = W - acc;
    acc = 0;
    for (int j = 0; j < rows - 1; ++j) {
      rowh[j] = pps.row_height_minus1[j] + 1;
      acc += rowh[j];
    }
    if (acc >= H) fail("row_height_minus1", "tile rows taller than the picture");
    rowh[rows - 1] = H - acc;
  }
  std::vector<int> key = {W, H, sps.log2_ctb, cols, rows};
  key.insert(key.end(), colw.begin(), colw.end());
  key.insert(key.end(), rowh.begin(), rowh.end());
  MapCache& cache = map_cache();
  {
    std::lock_guard<std::mutex> g(cache.mu);
    for (const auto& e : cache.entries)
      if (e.first == key) return e.second;
  }
  std::shared_ptr<const ScanMaps> m = make_scan_maps(W, H, sps.log2_ctb, colw, rowh);
  std::lock_guard<std::mutex> g(cache.mu);
  cache.entries.emplace_front(std::move(key), m);
  if (cache.entries.size() > MapCache::kEntries) cache.entries.pop_back();
  return m;
}

namespace {

std::shared_ptr<ScanMaps> make_scan_maps(int W, int H, int log2_ctb, const std::vector<int>& colw,
                                         const std::vector<int>& rowh) {
  auto m = std::make_shared<ScanMaps>();
  const int cols = (int)colw.size(), rows = (int)rowh.size();
  m->col_bd.assign(cols + 1, 0);
  m->row_bd.assign(rows + 1, 0);
  for (int i = 0; i < cols; ++i) m->col_bd[i + 1] = m->col_bd[i] + colw[i];
  for (int j = 0; j < rows; ++j) m->row_bd[j + 1] = m->row_bd[j] + rowh[j];
  m->ctb_col_to_tile_x.resize(W);
  m->ctb_row_to_tile_y.resize(H);
  for (int i = 0; i < cols; ++i)
    for (int x = m->col_bd[i]; x < m->col_bd[i + 1]; ++x) m->ctb_col_to_tile_x[x] = i;
  for (int j = 0; j < rows; ++j)
    for (int y = m->row_bd[j]; y < m->row_bd[j + 1]; ++y) m->ctb_row_to_tile_y[y] = j;
  const int N = W * H;
  m->ctb_rs_to_ts.resize(N);
  m->ctb_ts_to_rs.resize(N);
  m->tile_id.resize(N);
  for (int rs = 0; rs < N; ++rs) {
    int tbX = rs % W, tbY = rs / W;
    int tileX = m->ctb_col_to_tile_x[tbX], tileY = m->ctb_row_to_tile_y[tbY];
    int v = 0;
    for (int i = 0; i < tileX; ++i) v += rowh[tileY] * colw[i];
    for (int j = 0; j < tileY; ++j) v += W * rowh[j];
    v += (tbY - m->row_bd[tileY]) * colw[tileX] + tbX - m->col_bd[tileX];
    m->ctb_rs_to_ts[rs] = v;
    m->ctb_ts_to_rs[v] = rs;
  }
  for (int j = 0, tid = 0; j < rows; ++j)
    for (int i = 0; i < cols; ++i, ++tid)
      for (int y = m->row_bd[j]; y < m->row_bd[j + 1]; ++y)
        for (int x = m->col_bd[i]; x < m->col_bd[i + 1]; ++x) m->tile_id[m->ctb_rs_to_ts[y * W + x]] = tid;
  m->tile_id_rs.resize(N);
  for (int rs = 0; rs < N; ++rs) m->tile_id_rs[rs] = m->tile_id[m->ctb_rs_to_ts[rs]];
  // z-scan order at 4x4 granularity (6.5.2 with MinTbLog2SizeY replaced by 2; equivalent
  // for every availability query the parser makes, see slice_decoder.h). The order inside
  // a CTB is the same for every CTB, so it is computed once and offset per CTB.
  const int shift = log2_ctb - 2;
  const int c4 = 1 << shift;
  std::vector<int> inner((size_t)c4 * c4);
  for (int y = 0; y < c4; ++y)
    for (int x = 0; x < c4; ++x) {
      int p = 0;
      for (int i = 0; i < shift; ++i) {
        int mm = 1 << i;
        p += ((mm & x) ? mm * mm : 0) + ((mm & y) ? 2 * mm * mm : 0);
      }
      inner[(size_t)y * c4 + x] = p;
    }
  const int gw = W << shift, gh = H << shift;
  m->min_tb_stride = gw;
  m->min_tb_addr_zs.resize((size_t)gw * gh);
  for (int y = 0; y < gh; ++y) {
    int* row = &m->min_tb_addr_zs[(size_t)y * gw];
    const int* irow = &inner[(size_t)(y & (c4 - 1)) * c4];
    for (int cx = 0; cx < W; ++cx) {
      const int base = m->ctb_rs_to_ts[(y >> shift) * W + cx] << (shift * 2);
      for (int x = 0; x < c4; ++x) row[cx * c4 + x] = base + irow[x];
    }
  }
  return m;
}

}  // namespace

}  // namespace bitsr
