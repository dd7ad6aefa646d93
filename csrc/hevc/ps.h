// Parameter sets (H.265 7.3.2): VPS, SPS, PPS with VUI, HRD, scaling lists, short-term
// RPS and the range extension. Derived variables (7.4.3) are computed once at parse time
// (SPS) or at activation (PPS tile maps, which need the SPS).
#pragma once
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "bitstream/bit_reader.h"
#include "hevc/limits.h"

namespace bitsr {

constexpr int kMaxRpsEntries = 16;

struct ProfileTierLevel {
  int general_profile_space = 0;
  bool general_tier_flag = false;
  int general_profile_idc = 0;
  uint32_t general_profile_compatibility_flags = 0;
  bool general_progressive_source_flag = false, general_interlaced_source_flag = false;
  bool general_non_packed_constraint_flag = false, general_frame_only_constraint_flag = false;
  uint64_t general_constraint_bits = 0;  // the 43+1 bits after the four source flags
  int general_level_idc = 0;
};

struct ShortTermRps {
  int num_negative = 0, num_positive = 0;
  std::array<int32_t, kMaxRpsEntries> delta_poc_s0{}, delta_poc_s1{};
  std::array<uint8_t, kMaxRpsEntries> used_s0{}, used_s1{};
  int num_delta_pocs() const { return num_negative + num_positive; }
};

struct HrdParameters {
  bool nal_hrd_parameters_present_flag = false, vcl_hrd_parameters_present_flag = false;
  bool sub_pic_hrd_params_present_flag = false;
};

struct Vui {
  bool aspect_ratio_info_present_flag = false;
  int aspect_ratio_idc = 0, sar_width = 0, sar_height = 0;
  bool video_signal_type_present_flag = false;
  int video_format = 5;
  bool video_full_range_flag = false;
  bool colour_description_present_flag = false;
  int colour_primaries = 2, transfer_characteristics = 2, matrix_coeffs = 2;
  bool field_seq_flag = false, frame_field_info_present_flag = false;
  bool default_display_window_flag = false;
  int def_disp_win[4] = {0, 0, 0, 0};
  bool vui_timing_info_present_flag = false;
  uint32_t num_units_in_tick = 0, time_scale = 0;
  bool vui_hrd_parameters_present_flag = false;
  HrdParameters hrd;
};

struct Vps {
  int vps_id = 0;
  int max_layers = 1, max_sub_layers = 1;
  ProfileTierLevel ptl;
};

struct Sps {
  int sps_id = 0, vps_id = 0;
  int max_sub_layers = 1;
  ProfileTierLevel ptl;
  int chroma_format_idc = 1;
  bool separate_colour_plane_flag = false;
  int ChromaArrayType = 1;
  int width = 0, height = 0;       // pic_width/height_in_luma_samples
  int conf_win[4] = {0, 0, 0, 0};  // left, right, top, bottom in luma samples
  int bit_depth_luma = 8, bit_depth_chroma = 8;
  int log2_max_poc_lsb = 4;
  int max_dec_pic_buffering[8] = {}, max_num_reorder[8] = {}, max_latency_increase_plus1[8] = {};
  int log2_min_cb = 3, log2_ctb = 4;
  int log2_min_tb = 2, log2_max_tb = 5;
  int max_transform_hierarchy_depth_inter = 0, max_transform_hierarchy_depth_intra = 0;
  bool scaling_list_enabled_flag = false;
  bool amp_enabled_flag = false;
  bool sample_adaptive_offset_enabled_flag = false;
  bool pcm_enabled_flag = false;
  int pcm_bit_depth_luma = 8, pcm_bit_depth_chroma = 8;
  int log2_min_pcm_cb = 3, log2_max_pcm_cb = 3;
  bool pcm_loop_filter_disabled_flag = false;
  std::vector<ShortTermRps> st_rps;  // num_short_term_ref_pic_sets entries
  bool long_term_ref_pics_present_flag = false;
  int num_long_term_ref_pics_sps = 0;
  std::array<int, 33> lt_ref_pic_poc_lsb_sps{};
  std::array<uint8_t, 33> used_by_curr_pic_lt_sps_flag{};
  bool sps_temporal_mvp_enabled_flag = false;
  bool strong_intra_smoothing_enabled_flag = false;
  bool vui_parameters_present_flag = false;
  Vui vui;
  // range extension
  bool transform_skip_rotation_enabled_flag = false, transform_skip_context_enabled_flag = false;
  bool implicit_rdpcm_enabled_flag = false, explicit_rdpcm_enabled_flag = false;
  bool extended_precision_processing_flag = false, intra_smoothing_disabled_flag = false;
  bool high_precision_offsets_enabled_flag = false, persistent_rice_adaptation_enabled_flag = false;
  bool cabac_bypass_alignment_enabled_flag = false;

  // derived
  int SubWidthC = 2, SubHeightC = 2;
  int CtbSizeY = 16, MinCbSizeY = 8;
  int PicWidthInCtbsY = 0, PicHeightInCtbsY = 0, PicSizeInCtbsY = 0;
  int PicWidthInMinCbsY = 0, PicHeightInMinCbsY = 0;
  int QpBdOffsetY = 0, QpBdOffsetC = 0;
  int CoeffMinY = -32768, CoeffMaxY = 32767, CoeffMinC = -32768, CoeffMaxC = 32767;
  int WpOffsetBdShiftY = 0, WpOffsetBdShiftC = 0, WpOffsetHalfRangeY = 128, WpOffsetHalfRangeC = 128;
};

struct Pps {
  int pps_id = 0, sps_id = 0;
  bool dependent_slice_segments_enabled_flag = false;
  bool output_flag_present_flag = false;
  int num_extra_slice_header_bits = 0;
  bool sign_data_hiding_enabled_flag = false;
  bool cabac_init_present_flag = false;
  int num_ref_idx_l0_default_active = 1, num_ref_idx_l1_default_active = 1;
  int init_qp_minus26 = 0;
  bool constrained_intra_pred_flag = false;
  bool transform_skip_enabled_flag = false;
  bool cu_qp_delta_enabled_flag = false;
  int diff_cu_qp_delta_depth = 0;
  int cb_qp_offset = 0, cr_qp_offset = 0;
  bool slice_chroma_qp_offsets_present_flag = false;
  bool weighted_pred_flag = false, weighted_bipred_flag = false;
  bool transquant_bypass_enabled_flag = false;
  bool tiles_enabled_flag = false, entropy_coding_sync_enabled_flag = false;
  int num_tile_columns = 1, num_tile_rows = 1;
  bool uniform_spacing_flag = true;
  std::vector<int> column_width_minus1, row_height_minus1;
  bool loop_filter_across_tiles_enabled_flag = true;
  bool loop_filter_across_slices_enabled_flag = false;
  bool deblocking_filter_control_present_flag = false;
  bool deblocking_filter_override_enabled_flag = false;
  bool pps_deblocking_filter_disabled_flag = false;
  int beta_offset_div2 = 0, tc_offset_div2 = 0;
  bool lists_modification_present_flag = false;
  int log2_parallel_merge_level = 2;
  bool slice_segment_header_extension_present_flag = false;
  // range extension
  int log2_max_transform_skip_block_size = 2;
  bool cross_component_prediction_enabled_flag = false;
  bool chroma_qp_offset_list_enabled_flag = false;
  int diff_cu_chroma_qp_offset_depth = 0;
  int chroma_qp_offset_list_len = 0;
  int cb_qp_offset_list[6] = {}, cr_qp_offset_list[6] = {};
  int log2_sao_offset_scale_luma = 0, log2_sao_offset_scale_chroma = 0;
};

// Tile and scan maps of 6.5.1/6.5.2, derived when a PPS is activated with its SPS.
struct ScanMaps {
  std::vector<int> col_bd, row_bd;                       // tile boundaries in CTBs (size cols+1 / rows+1)
  std::vector<int> ctb_rs_to_ts, ctb_ts_to_rs, tile_id;  // tile_id indexed by TS address
  std::vector<int> tile_id_rs;                           // tile_id indexed by raster address
  std::vector<int> ctb_col_to_tile_x;                    // CTB column -> tile column index
  std::vector<int> ctb_row_to_tile_y;
  std::vector<int> min_tb_addr_zs;  // [PicHeightInMinTbs][PicWidthInMinTbs]
  int min_tb_stride = 0;
};

struct ActiveParams {
  std::shared_ptr<const Vps> vps;
  std::shared_ptr<const Sps> sps;
  std::shared_ptr<const Pps> pps;
  std::shared_ptr<const ScanMaps> maps;
};

std::shared_ptr<Vps> parse_vps(BitReader& br);
std::shared_ptr<Sps> parse_sps(BitReader& br, const Limits& limits);
std::shared_ptr<Pps> parse_pps(BitReader& br);
// Checks a PPS against its SPS and derives the scan maps. Throws on inconsistent sets. Maps
// are shared by every decoder of the process with the same geometry (picture size in CTBs,
// CTB size, tiles): a 1080p map costs about as much as parsing a small picture.
std::shared_ptr<const ScanMaps> derive_scan_maps(const Sps& sps, const Pps& pps);

// st_ref_pic_set(idx) (7.3.7): idx == sps.st_rps.size() when parsed in a slice header.
void parse_st_ref_pic_set(BitReader& br, int idx, const std::vector<ShortTermRps>& sets, int max_dec_pic_buffering,
                          ShortTermRps& out);

void parse_profile_tier_level(BitReader& br, bool profile_present, int max_sub_layers_minus1, ProfileTierLevel& ptl);

}  // namespace bitsr
