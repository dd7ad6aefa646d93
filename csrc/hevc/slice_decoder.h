// Internal: the state of one slice segment being parsed. Its member functions are split by
// syntax layer: syntax.cpp (CTU, CU, PU, TU), residual.cpp (residual_coding), motion.cpp
// (merge, AMVP, TMVP).
#pragma once
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "common/error.h"
#include "hevc/cabac.h"
#include "hevc/fill.h"
#include "hevc/slice_data.h"
#include "hevc/wpp_rows.h"

namespace bitsr {

struct PictureStateImpl {
  WppSlot wpp;       // storage after the second CTB of a CTB row (9.3.2.4)
  CabacContexts ds;  // storage at the end of a slice segment, for dependent slices
  bool ds_valid = false;
  int last_qpy = 0;       // QpY of the last CU, carried into dependent slice segments
  int slice_addr_rs = 0;  // SliceAddrRs of the current slice
};

struct Mv {
  int32_t x, y;
};

struct PuMotion {
  Mv mv[2];
  int ref_idx[2];
  int pred_flag[2];
};

class SliceDecoder {
 public:
  SliceDecoder(PictureState& st, const SliceDataInput& in);
  void run();
  // Row r of a segment parsed by rows (wpp_rows.h), and the rows after it should r be the
  // last substream; sets the row's status.
  void parse_row(RowJob& job, int r);
  // Motion of the pending PUs [begin, end) of this slice segment (slice_data.h).
  void derive_pending(const PendingRange& range, int& failed_ctb);
  // run() then derives each PU's motion as it is parsed (see PendingRange).
  void derive_as_parsed(PendingRange* range) {
    derive_now_ = range;
    watch_col();
    ctb_sync_ = st_.publish || col_final_ < INT_MAX;  // (with one thread, neither)
  }

 private:
  // syntax.cpp
  void init_contexts();
  void start_substream(const uint8_t* p);
  void begin_segment();
  void sync_contexts(bool slice_start);
  void ctb_loop(size_t next_entry);
  bool is_tile_start(int ts) const { return ts == 0 || maps_.tile_id[ts] != maps_.tile_id[ts - 1]; }
  bool is_row_start(int rs) const {
    return rs % pic_w_ctb_ == 0 || maps_.tile_id[maps_.ctb_rs_to_ts[rs]] != maps_.tile_id[maps_.ctb_rs_to_ts[rs - 1]];
  }
  WppSlot* wpp_slot(int row);  // where the contexts after row `row`'s second CTB go
  void coding_tree_unit();
  void sao(int rx, int ry);
  void coding_quadtree(int x0, int y0, int log2_cb, int depth);
  void coding_unit(int x0, int y0, int log2_cb);
  void prediction_unit(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, bool skip);
  void mvd_coding(Mv& mvd);
  void pcm_sample(int x0, int y0, int log2_cb);
  void intra_modes(int x0, int y0, int log2_cb, bool nxn);
  void transform_tree(int x0, int y0, int xBase, int yBase, int log2_size, int depth, int blk_idx, int parent_cbf_cb,
                      int parent_cbf_cr);
  void transform_unit(int x0, int y0, int xBase, int yBase, int log2_size, int depth, int blk_idx, int cbf_luma,
                      int cbf_cb, int cbf_cr);
  void cu_qp_delta();
  void chroma_qp_offset();
  void cross_comp_pred(int c);
  int set_qp_for_cu(int xCb, int yCb);
  // 6.4.1 z-scan order availability.
  bool available_zs(int xCurr, int yCurr, int xNb, int yNb) const {
    if (xNb < 0 || yNb < 0 || xNb >= sps_.width || yNb >= sps_.height) return false;
    if (zs_[(size_t)(yNb >> 2) * zs_stride_ + (xNb >> 2)] > zs_[(size_t)(yCurr >> 2) * zs_stride_ + (xCurr >> 2)])
      return false;
    if ((xNb >> log2_ctb_) == (x_ctb_ >> log2_ctb_) && (yNb >> log2_ctb_) == (y_ctb_ >> log2_ctb_)) return true;
    const int ctb = (yNb >> log2_ctb_) * pic_w_ctb_ + (xNb >> log2_ctb_);
    return ctb_slice_addr_[ctb] == slice_addr_rs_ && tile_id_rs_[ctb] == tile_id_rs_[ctb_addr_rs_];
  }
  int pu_index_at(int x, int y) const;       // chroma PU of a 4:4:4 NxN CU, else 0
  int luma_pu_index_at(int x, int y) const;  // luma PU of an NxN intra CU, else 0

  // residual.cpp
  void residual_coding(int x0, int y0, int log2_size, int c_idx);

  // motion.cpp
  void derive_merge(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, int merge_idx,
                    PuMotion& out);
  Mv derive_amvp(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, int X, int ref_idx,
                 int mvp_flag);
  bool temporal_mv(int xPb, int yPb, int w, int h, int X, int ref_idx, Mv& out);
  bool col_mv(int xCol, int yCol, int X, int ref_idx, Mv& out);
  bool available_pb(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, int xNb, int yNb) const;
  void store_motion(PuRec& r, const PuMotion& m);
  // Motion derivation that runs beside other pictures' (frame_threads.h): this picture's
  // progress for later ones (PictureState::publish), and the collocated picture's, which
  // TMVP reads in the current CTB and the one to its right (the bottom-right candidate is
  // never taken below the CTB row).
  void watch_col();
  void before_ctb_motion(int ctb_rs) {
    if (st_.publish && ctb_rs / pic_w_ctb_ > st_.published / pic_w_ctb_) publish_motion(ctb_rs);
    if (col_final_ < INT_MAX) {
      const int cx = ctb_rs % pic_w_ctb_;
      const int need = ctb_rs - cx + std::min(cx + 2, pic_w_ctb_);
      if (need > col_final_) col_wait(need);
    }
  }
  void col_wait(int need);
  void publish_motion(int ctb_rs);
  void derive_motion(const PendingPu& p, PuMotion& m);
  void amvp_motion(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx, const int ref_idx[2],
                   const int mvp[2], const Mv mvd[2], PuMotion& m);

  // helpers
  size_t g(int x, int y) const { return (size_t)(y >> 2) * gw_ + (x >> 2); }
  const PuRec& rec(int x, int y) const { return pr_.at(g(x, y)); }
  // Adds a record for the w x h rectangle at (x, y) and points its blocks at it.
  uint32_t add_rec(int x, int y, int w, int h, PuRec r) {
    r.x4 = (uint16_t)(x >> 2);
    r.y4 = (uint16_t)(y >> 2);
    r.w4 = (uint8_t)(w >> 2);
    r.h4 = (uint8_t)(h >> 2);
    const uint32_t id = sink_ ? row_add(r) : pr_.add(r);
    fill_rect<uint32_t>(pr_.pu.data(), g(x, y), gw_, w >> 2, h >> 2, id);
    if (cu_nrec_ < 4) cu_recs_[cu_nrec_++] = id;
    return id;
  }
  // A record in the row's own range (wpp_rows.h): a CTB row has at most one per 4x4 block.
  uint32_t row_add(const PuRec& r) {
    if (sink_->rec_next == sink_->rec_end) fail("coding_unit", "more prediction units than blocks in a CTB row");
    pr_.recs[sink_->rec_next] = r;
    return (uint32_t)sink_->rec_next++;
  }
  // Bins decode branch-free (CabacEngine::decode_flat), but for the few that are nearly always
  // the MPS in the skipped areas of low-bitrate video, where the branches predict well.
  int dec(int ctx_idx) { return eng_.decode_flat(cc_.m[ctx_idx]); }
  int dec_likely(int ctx_idx) { return eng_.decode(cc_.m[ctx_idx]); }

  PictureState& st_;
  PendingRange* derive_now_ = nullptr;
  MotionProgress* col_progress_ = nullptr;  // of in_.col_pic, when TMVP reads it
  int col_final_ = INT_MAX;                 // its CTBs known to be final
  bool ctb_sync_ = false;                   // derive_now_, and before_ctb_motion has work
  // parsing by rows: the job, the claimed row's outputs, and the CTB row being parsed
  // (counted from the job's first row; past the job's rows when its last one runs on)
  RowJob* job_ = nullptr;
  RowState* sink_ = nullptr;
  int cur_row_ = 0;
  PictureStateImpl& impl_;
  const SliceDataInput& in_;
  const SliceHeader& sh_;
  const Sps& sps_;
  const Pps& pps_;
  const ScanMaps& maps_;
  Picture& pic_;
  Priors& pr_;
  int gw_;
  const int* zs_;
  int zs_stride_;
  const int32_t* ctb_slice_addr_;
  const int* tile_id_rs_;  // tile of each CTB by raster address
  int pic_w_ctb_;
  CabacEngine eng_;
  CabacContexts cc_;

  // position
  int ctb_addr_ts_ = 0, ctb_addr_rs_ = 0;
  int x_ctb_ = 0, y_ctb_ = 0;
  int slice_addr_rs_ = 0;
  int log2_ctb_ = 4;
  int min_qg_log2_ = 6;
  int min_cqo_log2_ = 6;

  // CU state
  bool cu_transquant_bypass_ = false;
  int cu_pred_mode_ = PM_INTRA;
  int part_mode_ = 0;
  int ct_depth_ = 0;
  bool merge_flag_2nx2n_ = false;
  int max_trafo_depth_ = 0;
  bool intra_split_ = false;
  int cu_residual_ = 0;
  int intra_chroma_pred_mode_[4] = {};  // syntax value per PU (4 only for 4:4:4 NxN)
  int intra_mode_c_[4] = {};            // IntraPredModeC per PU
  int intra_mode_y_[4] = {};
  int cu_x_ = 0, cu_y_ = 0, cu_log2_ = 3;
  PuRec cu_rec_{};            // CU-level fields every record of the current CU starts from
  uint32_t cu_recs_[4] = {};  // records of the current CU
  int cu_nrec_ = 0;
  uint16_t slice_idx_ = 0;

  // QP state
  bool is_cu_qp_delta_coded_ = false;
  int cu_qp_delta_val_ = 0;
  bool is_cu_chroma_qp_offset_coded_ = false;
  int qp_y_pred_ = 26;
  int qp_y_ = 26;  // QpY of the last CU (qPY_PREV at the next group); SliceQpY after a reset

  // residual state
  bool transform_skip_flag_ = false;
  bool explicit_rdpcm_flag_ = false;
};

}  // namespace bitsr
