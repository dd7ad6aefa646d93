#include "hevc/slice_header.h"

#include <algorithm>

#include "common/error.h"

namespace bitsr {

static int ceil_log2(int v) {
  int r = 0;
  while ((1 << r) < v) ++r;
  return r;
}

static void parse_pred_weight_table(BitReader& br, const Sps& sps, SliceHeader& sh) {
  PredWeightTable& w = sh.pwt;
  w.luma_log2_weight_denom = br.ue_max(7, "luma_log2_weight_denom");
  w.chroma_log2_weight_denom = w.luma_log2_weight_denom;
  if (sps.ChromaArrayType != 0) {
    int d = br.se_range(-w.luma_log2_weight_denom, 7 - w.luma_log2_weight_denom, "delta_chroma_log2_weight_denom");
    w.chroma_log2_weight_denom = w.luma_log2_weight_denom + d;
  }
  const int hy = sps.WpOffsetHalfRangeY, hc = sps.WpOffsetHalfRangeC;
  for (int l = 0; l < (sh.slice_type == SLICE_B ? 2 : 1); ++l) {
    const int n = sh.num_ref_idx_active[l];
    // Single-layer streams: a reference never has the current picture's POC, so the flags
    // are always present (the condition in 7.3.6.3 only matters for multi-layer/SCC).
    for (int i = 0; i < n; ++i) w.luma_weight_flag[l][i] = br.flag("luma_weight_flag");
    if (sps.ChromaArrayType != 0)
      for (int i = 0; i < n; ++i) w.chroma_weight_flag[l][i] = br.flag("chroma_weight_flag");
    for (int i = 0; i < n; ++i) {
      w.luma_weight[l][i] = 1 << w.luma_log2_weight_denom;
      w.luma_offset[l][i] = 0;
      if (w.luma_weight_flag[l][i]) {
        w.luma_weight[l][i] += br.se_range(-128, 127, "delta_luma_weight");
        w.luma_offset[l][i] = br.se_range(-hy, hy - 1, "luma_offset");
      }
      for (int c = 0; c < 2; ++c) {
        w.chroma_weight[l][i][c] = 1 << w.chroma_log2_weight_denom;
        w.chroma_offset[l][i][c] = 0;
      }
      if (w.chroma_weight_flag[l][i]) {
        for (int c = 0; c < 2; ++c) {
          int cw = (1 << w.chroma_log2_weight_denom) + br.se_range(-128, 127, "delta_chroma_weight");
          int d = br.se_range(-4 * hc, 4 * hc - 1, "delta_chroma_offset");
          int off = (hc - ((hc * cw) >> w.chroma_log2_weight_denom)) + d;
          w.chroma_weight[l][i][c] = (int16_t)cw;
          w.chroma_offset[l][i][c] = (int16_t)std::clamp(off, -hc, hc - 1);
        }
      }
    }
  }
}

void parse_slice_header(BitReader& br, int nal_type, ParamSetLookup& lookup, const SliceHeader* prev,
                        const Limits& limits, SliceHeader& sh, ActiveParams& params) {
  sh.first_slice_segment_in_pic_flag = br.flag("first_slice_segment_in_pic_flag");
  if (nal_type >= NAL_BLA_W_LP && nal_type <= 23)
    sh.no_output_of_prior_pics_flag = br.flag("no_output_of_prior_pics_flag");
  sh.pps_id = br.ue_max(63, "slice_pic_parameter_set_id");
  params = lookup.activate(sh.pps_id);
  const Sps& sps = *params.sps;
  const Pps& pps = *params.pps;
  sh.dependent_slice_segment_flag = false;
  sh.slice_segment_address = 0;
  if (!sh.first_slice_segment_in_pic_flag) {
    if (pps.dependent_slice_segments_enabled_flag)
      sh.dependent_slice_segment_flag = br.flag("dependent_slice_segment_flag");
    sh.slice_segment_address = br.u(ceil_log2(sps.PicSizeInCtbsY), "slice_segment_address");
    if (sh.slice_segment_address >= sps.PicSizeInCtbsY) fail("slice_segment_address");
  }
  if (sh.dependent_slice_segment_flag) {
    if (!prev) fail("dependent_slice_segment_flag", "dependent slice segment without a preceding independent one");
    // Copy the independent slice header, keeping this segment's own fields.
    bool first = sh.first_slice_segment_in_pic_flag, noout = sh.no_output_of_prior_pics_flag;
    int pps_id = sh.pps_id, addr = sh.slice_segment_address;
    sh = *prev;
    sh.first_slice_segment_in_pic_flag = first;
    sh.no_output_of_prior_pics_flag = noout;
    sh.pps_id = pps_id;
    sh.slice_segment_address = addr;
    sh.dependent_slice_segment_flag = true;
  } else {
    for (int i = 0; i < pps.num_extra_slice_header_bits; ++i) br.skip(1, "slice_reserved_flag");
    sh.slice_type = br.ue_max(2, "slice_type");
    if (is_irap(nal_type) && sh.slice_type != SLICE_I) fail("slice_type", "IRAP picture with a P or B slice");
    sh.pic_output_flag = true;
    if (pps.output_flag_present_flag) sh.pic_output_flag = br.flag("pic_output_flag");
    if (sps.separate_colour_plane_flag) sh.colour_plane_id = br.u(2, "colour_plane_id");
    sh.slice_pic_order_cnt_lsb = 0;
    sh.st_rps_slice = ShortTermRps();
    sh.num_long_term_sps = sh.num_long_term_pics = 0;
    sh.slice_temporal_mvp_enabled_flag = false;
    sh.NumPicTotalCurr = 0;
    if (!is_idr(nal_type)) {
      sh.slice_pic_order_cnt_lsb = br.u(sps.log2_max_poc_lsb, "slice_pic_order_cnt_lsb");
      sh.short_term_ref_pic_set_sps_flag = br.flag("short_term_ref_pic_set_sps_flag");
      const int num_st = (int)sps.st_rps.size();
      if (!sh.short_term_ref_pic_set_sps_flag) {
        parse_st_ref_pic_set(br, num_st, sps.st_rps, sps.max_dec_pic_buffering[sps.max_sub_layers - 1],
                             sh.st_rps_slice);
      } else {
        if (num_st == 0) fail("short_term_ref_pic_set_sps_flag", "SPS has no short-term RPS to select");
        sh.short_term_ref_pic_set_idx = 0;
        if (num_st > 1) sh.short_term_ref_pic_set_idx = br.u(ceil_log2(num_st), "short_term_ref_pic_set_idx");
        if (sh.short_term_ref_pic_set_idx >= num_st) fail("short_term_ref_pic_set_idx");
        sh.st_rps_slice = sps.st_rps[sh.short_term_ref_pic_set_idx];
      }
      if (sps.long_term_ref_pics_present_flag) {
        if (sps.num_long_term_ref_pics_sps > 0)
          sh.num_long_term_sps = br.ue_max(sps.num_long_term_ref_pics_sps, "num_long_term_sps");
        sh.num_long_term_pics = br.ue_max(32 - sh.num_long_term_sps, "num_long_term_pics");
        const int n = sh.num_long_term_sps + sh.num_long_term_pics;
        if (n + sh.st_rps_slice.num_delta_pocs() > kMaxRpsEntries)
          fail("num_long_term_pics", "too many reference pictures");
        for (int i = 0; i < n; ++i) {
          if (i < sh.num_long_term_sps) {
            int idx = 0;
            if (sps.num_long_term_ref_pics_sps > 1) idx = br.u(ceil_log2(sps.num_long_term_ref_pics_sps), "lt_idx_sps");
            if (idx >= sps.num_long_term_ref_pics_sps) fail("lt_idx_sps");
            sh.poc_lsb_lt[i] = sps.lt_ref_pic_poc_lsb_sps[idx];
            sh.used_by_curr_pic_lt[i] = sps.used_by_curr_pic_lt_sps_flag[idx];
          } else {
            sh.poc_lsb_lt[i] = br.u(sps.log2_max_poc_lsb, "poc_lsb_lt");
            sh.used_by_curr_pic_lt[i] = br.flag("used_by_curr_pic_lt_flag");
          }
          sh.delta_poc_msb_present_flag[i] = br.flag("delta_poc_msb_present_flag");
          int32_t cycle = 0;
          if (sh.delta_poc_msb_present_flag[i]) cycle = (int32_t)br.ue_max(1u << 24, "delta_poc_msb_cycle_lt");
          if (i != 0 && i != sh.num_long_term_sps) cycle += sh.delta_poc_msb_cycle_lt[i - 1];
          sh.delta_poc_msb_cycle_lt[i] = cycle;
        }
      }
      if (sps.sps_temporal_mvp_enabled_flag)
        sh.slice_temporal_mvp_enabled_flag = br.flag("slice_temporal_mvp_enabled_flag");
      const ShortTermRps& r = sh.st_rps_slice;
      for (int i = 0; i < r.num_negative; ++i) sh.NumPicTotalCurr += r.used_s0[i];
      for (int i = 0; i < r.num_positive; ++i) sh.NumPicTotalCurr += r.used_s1[i];
      for (int i = 0; i < sh.num_long_term_sps + sh.num_long_term_pics; ++i)
        sh.NumPicTotalCurr += sh.used_by_curr_pic_lt[i];
    }
    sh.slice_sao_luma_flag = sh.slice_sao_chroma_flag = false;
    if (sps.sample_adaptive_offset_enabled_flag) {
      sh.slice_sao_luma_flag = br.flag("slice_sao_luma_flag");
      if (sps.ChromaArrayType != 0) sh.slice_sao_chroma_flag = br.flag("slice_sao_chroma_flag");
    }
    sh.num_ref_idx_active[0] = sh.num_ref_idx_active[1] = 0;
    sh.ref_pic_list_modification_flag[0] = sh.ref_pic_list_modification_flag[1] = false;
    sh.mvd_l1_zero_flag = false;
    sh.cabac_init_flag = false;
    sh.collocated_from_l0_flag = true;
    sh.collocated_ref_idx = 0;
    sh.max_num_merge_cand = 5;
    if (sh.slice_type != SLICE_I) {
      if (sh.NumPicTotalCurr == 0) fail("slice_type", "P/B slice with no reference pictures in its RPS");
      sh.num_ref_idx_active[0] = pps.num_ref_idx_l0_default_active;
      if (sh.slice_type == SLICE_B) sh.num_ref_idx_active[1] = pps.num_ref_idx_l1_default_active;
      if (br.flag("num_ref_idx_active_override_flag")) {
        sh.num_ref_idx_active[0] = br.ue_max(14, "num_ref_idx_l0_active_minus1") + 1;
        if (sh.slice_type == SLICE_B) sh.num_ref_idx_active[1] = br.ue_max(14, "num_ref_idx_l1_active_minus1") + 1;
      }
      if (pps.lists_modification_present_flag && sh.NumPicTotalCurr > 1) {
        const int bits = ceil_log2(sh.NumPicTotalCurr);
        for (int l = 0; l < (sh.slice_type == SLICE_B ? 2 : 1); ++l) {
          sh.ref_pic_list_modification_flag[l] = br.flag("ref_pic_list_modification_flag");
          if (sh.ref_pic_list_modification_flag[l])
            for (int i = 0; i < sh.num_ref_idx_active[l]; ++i) {
              sh.list_entry[l][i] = (uint8_t)br.u(bits, "list_entry");
              if (sh.list_entry[l][i] >= sh.NumPicTotalCurr) fail("list_entry");
            }
        }
      }
      if (sh.slice_type == SLICE_B) sh.mvd_l1_zero_flag = br.flag("mvd_l1_zero_flag");
      if (pps.cabac_init_present_flag) sh.cabac_init_flag = br.flag("cabac_init_flag");
      if (sh.slice_temporal_mvp_enabled_flag) {
        if (sh.slice_type == SLICE_B) sh.collocated_from_l0_flag = br.flag("collocated_from_l0_flag");
        int l = sh.collocated_from_l0_flag ? 0 : 1;
        if (sh.num_ref_idx_active[l] > 1)
          sh.collocated_ref_idx = br.ue_max(sh.num_ref_idx_active[l] - 1, "collocated_ref_idx");
      }
      if ((pps.weighted_pred_flag && sh.slice_type == SLICE_P) ||
          (pps.weighted_bipred_flag && sh.slice_type == SLICE_B))
        parse_pred_weight_table(br, sps, sh);
      sh.max_num_merge_cand = 5 - br.ue_max(4, "five_minus_max_num_merge_cand");
    }
    sh.slice_qp_delta = br.se("slice_qp_delta");
    const int64_t qp = 26 + (int64_t)pps.init_qp_minus26 + sh.slice_qp_delta;  // se(v) reaches +-2^31
    if (qp < -sps.QpBdOffsetY || qp > 51) fail("slice_qp_delta", "SliceQpY out of range");
    sh.SliceQpY = (int)qp;
    sh.slice_cb_qp_offset = sh.slice_cr_qp_offset = 0;
    if (pps.slice_chroma_qp_offsets_present_flag) {
      sh.slice_cb_qp_offset = br.se_range(-12, 12, "slice_cb_qp_offset");
      sh.slice_cr_qp_offset = br.se_range(-12, 12, "slice_cr_qp_offset");
    }
    sh.cu_chroma_qp_offset_enabled_flag = false;
    if (pps.chroma_qp_offset_list_enabled_flag)
      sh.cu_chroma_qp_offset_enabled_flag = br.flag("cu_chroma_qp_offset_enabled_flag");
    sh.deblocking_filter_override_flag = false;
    if (pps.deblocking_filter_override_enabled_flag)
      sh.deblocking_filter_override_flag = br.flag("deblocking_filter_override_flag");
    sh.slice_deblocking_filter_disabled_flag = pps.pps_deblocking_filter_disabled_flag;
    sh.beta_offset_div2 = pps.beta_offset_div2;
    sh.tc_offset_div2 = pps.tc_offset_div2;
    if (sh.deblocking_filter_override_flag) {
      sh.slice_deblocking_filter_disabled_flag = br.flag("slice_deblocking_filter_disabled_flag");
      if (!sh.slice_deblocking_filter_disabled_flag) {
        sh.beta_offset_div2 = br.se_range(-6, 6, "slice_beta_offset_div2");
        sh.tc_offset_div2 = br.se_range(-6, 6, "slice_tc_offset_div2");
      }
    }
    sh.slice_loop_filter_across_slices_enabled_flag = pps.loop_filter_across_slices_enabled_flag;
    if (pps.loop_filter_across_slices_enabled_flag &&
        (sh.slice_sao_luma_flag || sh.slice_sao_chroma_flag || !sh.slice_deblocking_filter_disabled_flag))
      sh.slice_loop_filter_across_slices_enabled_flag = br.flag("slice_loop_filter_across_slices_enabled_flag");
  }
  sh.num_entry_point_offsets = 0;
  sh.entry_point_offset.clear();
  if (pps.tiles_enabled_flag || pps.entropy_coding_sync_enabled_flag) {
    int maxn;
    if (!pps.tiles_enabled_flag)
      maxn = sps.PicHeightInCtbsY - 1;
    else if (!pps.entropy_coding_sync_enabled_flag)
      maxn = pps.num_tile_columns * pps.num_tile_rows - 1;
    else
      maxn = pps.num_tile_columns * sps.PicHeightInCtbsY - 1;
    sh.num_entry_point_offsets = br.ue_max(maxn, "num_entry_point_offsets");
    if (sh.num_entry_point_offsets > limits.max_entry_points)
      throw LimitError(std::to_string(sh.num_entry_point_offsets) + " entry points exceed max_entry_points",
                       "num_entry_point_offsets");
    if (sh.num_entry_point_offsets > 0) {
      int len = br.ue_max(31, "offset_len_minus1") + 1;
      sh.entry_point_offset.resize(sh.num_entry_point_offsets);
      for (int i = 0; i < sh.num_entry_point_offsets; ++i)
        sh.entry_point_offset[i] = br.u(len, "entry_point_offset_minus1") + 1u;
    }
  }
  if (pps.slice_segment_header_extension_present_flag) {
    int len = br.ue_max(256, "slice_segment_header_extension_length");
    br.skip((size_t)len * 8, "slice_segment_header_extension_data_byte");
  }
  // byte_alignment(): one bit equal to 1, then zeros.
  if (br.u(1, "alignment_bit_equal_to_one") != 1) fail("alignment_bit_equal_to_one");
  while (!br.byte_aligned())
    if (br.u(1, "alignment_bit_equal_to_zero") != 0) fail("alignment_bit_equal_to_zero");
  sh.header_bits = br.pos();
}

}  // namespace bitsr
