// slice_segment_data(), coding_tree_unit(), sao(), coding_quadtree(), coding_unit(),
// prediction_unit(), pcm_sample(), transform_tree(), transform_unit() of H.265 7.3.8,
// with the context selection of 9.3.4.2 and the intra mode derivation of 8.4.2/8.4.3.
#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "hevc/slice_decoder.h"

namespace bitsr {

PictureState::PictureState(Picture& p, const ActiveParams& params, size_t rec_hint, bool full_room)
    : pic(p), params(params) {
  const Sps& sps = *params.sps;
  ctb_slice_addr.assign(sps.PicSizeInCtbsY, -1);
  pic.ctb_ok.assign(sps.PicSizeInCtbsY, 0);
  pic.num_ctb_ok = 0;
  pic.motion.reset();
  // The full size is address space: pages are touched as records are written.
  pic.pr.allocate((sps.width + 3) / 4, (sps.height + 3) / 4, full_room ? max_records(sps) : rec_hint);
  impl = std::make_unique<PictureStateImpl>();
}
PictureState::~PictureState() = default;

size_t PictureState::max_records(const Sps& sps) {
  // One record per PU, and a PU covers at least one 4x4 block (intra NxN of an 8x8 CU; inter
  // PUs are at least 8x4), plus one per CTB for concealment.
  return (size_t)((sps.width + 3) / 4) * (size_t)((sps.height + 3) / 4) + (size_t)sps.PicSizeInCtbsY;
}

bool PictureState::records_fixed() const { return pic.pr.cap >= max_records(*params.sps); }

void decode_slice_data(PictureState& st, const SliceDataInput& in, PendingRange& range) {
  range.begin = range.end = st.pending.size();
  range.derive_failed = false;
  range.slice_addr_rs = st.impl->slice_addr_rs;
  struct Close {  // the range also when parsing throws
    PictureState& st;
    PendingRange& r;
    ~Close() {
      r.end = st.pending.size();
      r.slice_addr_rs = st.impl->slice_addr_rs;
    }
  } close{st, range};
  // Rows move the records (Priors::reserve, shrink): not once other threads may read them.
  if (st.published == 0 && can_parse_rows(st, in)) {
    st.publish = false;
    st.pic.motion.set_state(MotionProgress::kIdle);
    parse_rows(st, in);
    return;
  }
  SliceDecoder d(st, in);
  if (in.derive_now) d.derive_as_parsed(&range);
  d.run();
}

void derive_slice_motion(PictureState& st, const SliceDataInput& in, const PendingRange& range, int& failed_ctb) {
  failed_ctb = -1;
  if (range.begin == range.end) return;
  SliceDecoder d(st, in);
  d.derive_pending(range, failed_ctb);
}

namespace {
enum PartModeValue { PART_2Nx2N = 0, PART_2NxN, PART_Nx2N, PART_NxN, PART_2NxnU, PART_2NxnD, PART_nLx2N, PART_nRx2N };
// Table 8-3: 4:2:2 chroma intra mode mapping.
const uint8_t kMode422[35] = {0,  1,  2,  2,  2,  2,  3,  5,  7,  8,  10, 11, 13, 15, 16, 18, 19, 20,
                              21, 22, 23, 23, 24, 24, 25, 25, 26, 27, 27, 28, 28, 29, 29, 30, 31};
}  // namespace

// One intra/DC record per CTB for areas without decoded data.
static void add_intra_ctb(Priors& pr, const Sps& sps, int rs, int qp) {
  const int c4 = sps.CtbSizeY / 4;
  const int x4 = (rs % sps.PicWidthInCtbsY) * c4, y4 = (rs / sps.PicWidthInCtbsY) * c4;
  PuRec r{};
  r.ref_idx[0] = r.ref_idx[1] = -1;
  r.pred_mode = PM_INTRA;
  r.cu_log2 = (uint8_t)sps.log2_ctb;
  r.intra_mode = 1;
  r.qp_y = (int8_t)qp;
  r.x4 = (uint16_t)x4;
  r.y4 = (uint16_t)y4;
  r.w4 = (uint8_t)std::min(c4, pr.gw - x4);
  r.h4 = (uint8_t)std::min(c4, pr.gh - y4);
  const uint32_t id = pr.add(r);
  fill_rect<uint32_t>(pr.pu.data(), (size_t)y4 * pr.gw + x4, pr.gw, r.w4, r.h4, id);
}

void fill_intra(Picture& pic, int qp) {
  const Sps& sps = *pic.sps;
  for (int rs = 0; rs < sps.PicSizeInCtbsY; ++rs) add_intra_ctb(pic.pr, sps, rs, qp);
}

void finish_slice_data(PictureState& st) {
  Picture& pic = st.pic;
  const Sps& sps = *st.params.sps;
  if (pic.num_ctb_ok != sps.PicSizeInCtbsY) {
    const int qp = pic.slices.empty() ? 26 + st.params.pps->init_qp_minus26 : pic.slices.front().slice_qp;
    // A CTB whose slice data broke off may be half written: it gets a fresh record, and the
    // records of its decoded part are simply no longer referenced by the grid.
    for (int rs = 0; rs < sps.PicSizeInCtbsY; ++rs)
      if (!pic.ctb_ok[rs]) add_intra_ctb(pic.pr, sps, rs, qp);
  }
}

SliceDecoder::SliceDecoder(PictureState& st, const SliceDataInput& in)
    : st_(st),
      impl_(*st.impl),
      in_(in),
      sh_(*in.sh),
      sps_(*st.params.sps),
      pps_(*st.params.pps),
      maps_(*st.params.maps),
      pic_(st.pic),
      pr_(st.pic.pr),
      gw_(st.pic.pr.gw),
      zs_(st.params.maps->min_tb_addr_zs.data()),
      zs_stride_(st.params.maps->min_tb_stride),
      ctb_slice_addr_(st.ctb_slice_addr.data()),
      tile_id_rs_(st.params.maps->tile_id_rs.data()),
      pic_w_ctb_(st.params.sps->PicWidthInCtbsY) {
  if (in.slice_idx < 0 || (size_t)in.slice_idx >= pic_.slices.size() || in.slice_idx > 65535)
    fail("slice_segment_address", "too many slices");
  slice_idx_ = (uint16_t)in.slice_idx;
  log2_ctb_ = sps_.log2_ctb;
  min_qg_log2_ = sps_.log2_ctb - pps_.diff_cu_qp_delta_depth;
  min_cqo_log2_ = sps_.log2_ctb - pps_.diff_cu_chroma_qp_offset_depth;
}

void SliceDecoder::init_contexts() {
  int init_type;
  if (sh_.slice_type == SLICE_I)
    init_type = 0;
  else if (sh_.slice_type == SLICE_P)
    init_type = sh_.cabac_init_flag ? 2 : 1;
  else
    init_type = sh_.cabac_init_flag ? 1 : 2;
  cc_.init(init_type, sh_.SliceQpY);
}

void SliceDecoder::start_substream(const uint8_t* p) { eng_.start(p, in_.data + in_.size); }

// Context initialisation / synchronisation at the start of a substream (9.3.1).
void SliceDecoder::sync_contexts(bool slice_start) {
  const int W = pic_w_ctb_;
  if (is_tile_start(ctb_addr_ts_)) {
    init_contexts();
    qp_y_ = sh_.SliceQpY;
  } else if (pps_.entropy_coding_sync_enabled_flag && is_row_start(ctb_addr_rs_)) {
    const int x0 = (ctb_addr_rs_ % W) << log2_ctb_, y0 = (ctb_addr_rs_ / W) << log2_ctb_;
    const int tr = ctb_addr_rs_ - W + 1;
    // by rows, the row above's slot (the job's rows start at a row, so row 0 reads impl_'s)
    const WppSlot& s = job_ && cur_row_ > 0 ? job_->slots[(size_t)cur_row_ - 1] : impl_.wpp;
    if (available_zs(x0, y0, x0 + sps_.CtbSizeY, y0 - sps_.CtbSizeY) && s.valid && s.ctb_rs == tr) {
      std::memcpy(&cc_, &s.cc, sizeof(cc_));
    } else {
      init_contexts();
    }
    qp_y_ = sh_.SliceQpY;
  } else if (slice_start && sh_.dependent_slice_segment_flag) {
    if (!impl_.ds_valid) fail("dependent_slice_segment_flag", "no stored contexts for a dependent slice segment");
    std::memcpy(&cc_, &impl_.ds, sizeof(cc_));
    qp_y_ = impl_.last_qpy;
  } else {
    init_contexts();
    qp_y_ = sh_.SliceQpY;
  }
}

WppSlot* SliceDecoder::wpp_slot(int row) { return job_ ? &job_->slots[(size_t)row] : &impl_.wpp; }

// The segment's first CTB: its address checks and marking. impl_.slice_addr_rs is set by the
// caller (run, or parse_rows before the rows start).
void SliceDecoder::begin_segment() {
  slice_addr_rs_ = impl_.slice_addr_rs;
  ctb_addr_rs_ = sh_.slice_segment_address;
  ctb_addr_ts_ = maps_.ctb_rs_to_ts[ctb_addr_rs_];
  if (sh_.dependent_slice_segment_flag && ctb_addr_ts_ > 0 &&
      st_.ctb_slice_addr[maps_.ctb_ts_to_rs[ctb_addr_ts_ - 1]] != slice_addr_rs_)
    fail("slice_segment_address", "dependent slice segment does not continue its slice");
  // ctb_slice_addr must be set before availability checks of the first CTB
  if (st_.ctb_slice_addr[ctb_addr_rs_] != -1) fail("slice_segment_address", "slice segment overlaps an earlier one");
  st_.ctb_slice_addr[ctb_addr_rs_] = slice_addr_rs_;
  if (sink_) sink_->marked_end = ctb_addr_rs_ + 1;
}

void SliceDecoder::run() {
  if (!sh_.dependent_slice_segment_flag) impl_.slice_addr_rs = sh_.slice_segment_address;
  begin_segment();
  start_substream(in_.data);
  sync_contexts(true);
  ctb_loop(0);
}

void SliceDecoder::parse_row(RowJob& job, int r) {
  job_ = &job;
  sink_ = &job.rows[(size_t)r];
  cur_row_ = r;
  if (r == 0) {
    begin_segment();
    start_substream(in_.data);
    sync_contexts(true);
  } else {
    // What one thread does at the end of the row above, but the checks of that row's end,
    // which its own thread makes (it knows where the substream ended).
    slice_addr_rs_ = impl_.slice_addr_rs;
    ctb_addr_rs_ = ctb_addr_ts_ = (job.first_row + r) * pic_w_ctb_;  // no tiles: ts == rs
    // An earlier segment's CTB: the row above fails there, and its data must stay as it is.
    if (job.first_addr[(size_t)r] != -1) throw RowJob::Aborted();
    st_.ctb_slice_addr[ctb_addr_rs_] = slice_addr_rs_;
    sink_->marked_end = ctb_addr_rs_ + 1;
    if (!job.wait_above(r, std::min(2, pic_w_ctb_))) throw RowJob::Aborted();
    start_substream(in_.data + in_.entry_points[(size_t)r - 1]);
    sync_contexts(false);
  }
  ctb_loop((size_t)r);
}

void SliceDecoder::ctb_loop(size_t next_entry) {
  const int W = pic_w_ctb_;
  for (;;) {
    const int col = ctb_addr_rs_ % W;
    x_ctb_ = col << log2_ctb_;
    y_ctb_ = (ctb_addr_rs_ / W) << log2_ctb_;
    // By rows: the row above must be two CTBs ahead (its last CTB when it has fewer left),
    // unless this thread parsed it itself (the last row running on).
    if (job_ && cur_row_ > 0 && cur_row_ < job_->nrows && !job_->wait_above(cur_row_, std::min(col + 2, W)))
      throw RowJob::Aborted();
    st_.ctb_slice_addr[ctb_addr_rs_] = slice_addr_rs_;
    if (ctb_sync_ && !derive_now_->derive_failed) before_ctb_motion(ctb_addr_rs_);  // may set derive_failed
    coding_tree_unit();
    if (eng_.overrun()) fail("slice_segment_data", "slice data ends inside a coding tree unit");
    // WPP storage after the second CTB of a row of a tile (9.3.2.2 end).
    if (pps_.entropy_coding_sync_enabled_flag) {
      const int col_in_tile = col - maps_.col_bd[maps_.ctb_col_to_tile_x[col]];
      if (col_in_tile == 1) {
        WppSlot* s = wpp_slot(cur_row_);
        std::memcpy(&s->cc, &cc_, sizeof(cc_));
        s->valid = true;
        s->ctb_rs = ctb_addr_rs_;
      }
    }
    const int end_of_slice_segment = eng_.terminate();
    pic_.ctb_ok[ctb_addr_rs_] = 1;
    if (sink_) {
      sink_->ctb_ok++;
      if (cur_row_ < job_->nrows) {
        job_->rows[(size_t)cur_row_].progress.store(col + 1, std::memory_order_release);
        job_->publish();
      }
    } else {
      pic_.num_ctb_ok++;
    }
    ++ctb_addr_ts_;
    if (end_of_slice_segment) {
      if (!eng_.check_stop_pattern())
        fail("end_of_slice_segment_flag", "slice data does not end at end_of_slice_segment_flag");
      // only cabac_zero_words (0x0000) may follow rbsp_slice_segment_trailing_bits
      for (const uint8_t* q = eng_.position(); q < in_.data + in_.size; ++q)
        if (*q != 0) fail("end_of_slice_segment_flag", "data follows the end of the slice segment");
      const bool ds = pps_.dependent_slice_segments_enabled_flag;
      if (sink_) {  // the owner keeps them if no earlier row stopped
        if (ds) std::memcpy(&sink_->ds, &cc_, sizeof(cc_));
        sink_->ds_valid = ds;
        sink_->last_qpy = qp_y_;
        sink_->status.store(RowState::kEnded);
        job_->stop_at((int)(sink_ - job_->rows.get()));
        job_->publish();
        return;
      }
      if (ds) {
        std::memcpy(&impl_.ds, &cc_, sizeof(cc_));
        impl_.ds_valid = true;
      }
      impl_.last_qpy = qp_y_;
      return;
    }
    if (ctb_addr_ts_ >= sps_.PicSizeInCtbsY) fail("end_of_slice_segment_flag", "slice data runs past the last CTB");
    ctb_addr_rs_ = maps_.ctb_ts_to_rs[ctb_addr_ts_];
    // By rows, the next row's first CTB is that row's thread's to mark; its address at the
    // start stands for what one thread would find here.
    const bool hand_over = job_ && is_row_start(ctb_addr_rs_) && cur_row_ + 1 < job_->nrows;
    const int32_t addr = hand_over ? job_->first_addr[(size_t)cur_row_ + 1] : st_.ctb_slice_addr[ctb_addr_rs_];
    if (addr != -1) fail("slice_segment_address", "slice segment overlaps an earlier one");
    if (hand_over) {
      sink_->next_marked = true;
    } else {
      st_.ctb_slice_addr[ctb_addr_rs_] = slice_addr_rs_;
      if (sink_) sink_->marked_end = ctb_addr_rs_ + 1;
    }
    const bool new_substream = (pps_.tiles_enabled_flag && is_tile_start(ctb_addr_ts_)) ||
                               (pps_.entropy_coding_sync_enabled_flag && is_row_start(ctb_addr_rs_));
    if (new_substream) {
      if (!eng_.terminate()) fail("end_of_subset_one_bit", "end_of_subset_one_bit is not 1");
      if (!eng_.check_stop_pattern())
        fail("end_of_subset_one_bit", "substream does not end byte-aligned after end_of_subset_one_bit");
      const uint8_t* p = eng_.position();
      if (next_entry < in_.entry_points.size() && in_.data + in_.entry_points[next_entry++] != p)
        fail("entry_point_offset_minus1", "entry point does not match the end of the previous substream");
      if (hand_over) {
        sink_->status.store(RowState::kDone);
        job_->publish();
        return;
      }
      start_substream(p);
      if (job_) ++cur_row_;  // the last row runs on
      sync_contexts(false);
    }
  }
}

void SliceDecoder::coding_tree_unit() {
  if (sh_.slice_sao_luma_flag || sh_.slice_sao_chroma_flag) sao(x_ctb_ >> log2_ctb_, y_ctb_ >> log2_ctb_);
  coding_quadtree(x_ctb_, y_ctb_, log2_ctb_, 0);
}

void SliceDecoder::sao(int rx, int ry) {
  const int W = sps_.PicWidthInCtbsY;
  int merge_left = 0, merge_up = 0;
  if (rx > 0) {
    bool in_slice = ctb_addr_rs_ > slice_addr_rs_;  // CtbAddrInRs - 1 >= SliceAddrRs
    bool in_tile = maps_.tile_id[ctb_addr_ts_] == maps_.tile_id[maps_.ctb_rs_to_ts[ctb_addr_rs_ - 1]];
    if (in_slice && in_tile) merge_left = dec_likely(ctx::SAO_MERGE);
  }
  if (ry > 0 && !merge_left) {
    bool in_slice = ctb_addr_rs_ - W >= slice_addr_rs_;
    bool in_tile = maps_.tile_id[ctb_addr_ts_] == maps_.tile_id[maps_.ctb_rs_to_ts[ctb_addr_rs_ - W]];
    if (in_slice && in_tile) merge_up = dec_likely(ctx::SAO_MERGE);
  }
  if (merge_left || merge_up) return;
  int type[3] = {0, 0, 0};
  const int ncomp = sps_.ChromaArrayType != 0 ? 3 : 1;
  for (int c = 0; c < ncomp; ++c) {
    if (!((sh_.slice_sao_luma_flag && c == 0) || (sh_.slice_sao_chroma_flag && c > 0))) continue;
    if (c < 2) {
      type[c] = dec(ctx::SAO_TYPE_IDX) ? (eng_.bypass() ? 2 : 1) : 0;
    } else {
      type[2] = type[1];
    }
    if (!type[c]) continue;
    const int bd = c == 0 ? sps_.bit_depth_luma : sps_.bit_depth_chroma;
    const int cmax = (1 << (std::min(bd, 10) - 5)) - 1;
    int abs_v[4];
    for (int i = 0; i < 4; ++i) {
      int v = 0;
      while (v < cmax && eng_.bypass()) ++v;
      abs_v[i] = v;
    }
    if (type[c] == 1) {
      for (int i = 0; i < 4; ++i)
        if (abs_v[i]) eng_.bypass();
      eng_.bypass_bits(5);  // sao_band_position
    } else if (c < 2) {
      eng_.bypass_bits(2);  // sao_eo_class
    }
  }
}

void SliceDecoder::coding_quadtree(int x0, int y0, int log2_cb, int depth) {
  const int size = 1 << log2_cb;
  int split;
  if (x0 + size <= sps_.width && y0 + size <= sps_.height && log2_cb > sps_.log2_min_cb) {
    int inc = 0;
    if (available_zs(x0, y0, x0 - 1, y0) && (log2_ctb_ - rec(x0 - 1, y0).cu_log2) > depth) inc++;
    if (available_zs(x0, y0, x0, y0 - 1) && (log2_ctb_ - rec(x0, y0 - 1).cu_log2) > depth) inc++;
    split = dec_likely(ctx::SPLIT_CU_FLAG + inc);
  } else {
    split = log2_cb > sps_.log2_min_cb;
  }
  if (pps_.cu_qp_delta_enabled_flag && log2_cb >= min_qg_log2_) {
    // Start of a quantization group: qPY_PRED (8.6.1).
    is_cu_qp_delta_coded_ = false;
    cu_qp_delta_val_ = 0;
    const int prev = qp_y_;  // QpY of the last CU of the previous group, or SliceQpY
    const int mask = sps_.CtbSizeY - 1;
    const int qa = (x0 & mask) ? rec(x0 - 1, y0).qp_y : prev;
    const int qb = (y0 & mask) ? rec(x0, y0 - 1).qp_y : prev;
    qp_y_pred_ = (qa + qb + 1) >> 1;
  }
  if (sh_.cu_chroma_qp_offset_enabled_flag && log2_cb >= min_cqo_log2_) is_cu_chroma_qp_offset_coded_ = false;
  if (split) {
    const int h = size >> 1;
    coding_quadtree(x0, y0, log2_cb - 1, depth + 1);
    if (x0 + h < sps_.width) coding_quadtree(x0 + h, y0, log2_cb - 1, depth + 1);
    if (y0 + h < sps_.height) coding_quadtree(x0, y0 + h, log2_cb - 1, depth + 1);
    if (x0 + h < sps_.width && y0 + h < sps_.height) coding_quadtree(x0 + h, y0 + h, log2_cb - 1, depth + 1);
  } else {
    ct_depth_ = depth;
    coding_unit(x0, y0, log2_cb);
  }
}

int SliceDecoder::luma_pu_index_at(int x, int y) const {
  if (part_mode_ == PART_NxN && cu_pred_mode_ == PM_INTRA) {
    const int half = 1 << (cu_log2_ - 1);
    return ((y - cu_y_) >= half) * 2 + ((x - cu_x_) >= half);
  }
  return 0;
}

int SliceDecoder::pu_index_at(int x, int y) const {
  if (sps_.ChromaArrayType == 3 && part_mode_ == PART_NxN) {
    const int half = 1 << (cu_log2_ - 1);
    return ((y - cu_y_) >= half) * 2 + ((x - cu_x_) >= half);
  }
  return 0;
}

void SliceDecoder::coding_unit(int x0, int y0, int log2_cb) {
  const int n = 1 << log2_cb;
  cu_x_ = x0;
  cu_y_ = y0;
  cu_log2_ = log2_cb;
  cu_nrec_ = 0;
  cu_transquant_bypass_ = pps_.transquant_bypass_enabled_flag ? dec(ctx::CU_TRANSQUANT_BYPASS_FLAG) : 0;
  int skip = 0;
  if (sh_.slice_type != SLICE_I) {
    int inc = 0;
    if (available_zs(x0, y0, x0 - 1, y0) && rec(x0 - 1, y0).pred_mode == PM_SKIP) inc++;
    if (available_zs(x0, y0, x0, y0 - 1) && rec(x0, y0 - 1).pred_mode == PM_SKIP) inc++;
    skip = dec_likely(ctx::CU_SKIP_FLAG + inc);
  }
  int pcm = 0;
  part_mode_ = PART_2Nx2N;
  cu_residual_ = 0;
  intra_split_ = false;
  merge_flag_2nx2n_ = false;
  bool has_tt = false;
  PuRec& t = cu_rec_;
  t = PuRec{};
  t.ref_idx[0] = t.ref_idx[1] = -1;
  t.cu_log2 = (uint8_t)log2_cb;
  t.transquant_bypass = (uint8_t)cu_transquant_bypass_;
  t.slice_idx = slice_idx_;
  t.intra_mode = 255;
  t.qp_y = (int8_t)qp_y_pred_;
  if (skip) {
    cu_pred_mode_ = PM_SKIP;
    t.pred_mode = PM_SKIP;
    prediction_unit(x0, y0, n, x0, y0, n, n, 0, true);
  } else {
    const int intra = sh_.slice_type == SLICE_I ? 1 : dec(ctx::PRED_MODE_FLAG);
    cu_pred_mode_ = intra ? PM_INTRA : PM_INTER;
    t.pred_mode = (int8_t)cu_pred_mode_;
    if (!intra || log2_cb == sps_.log2_min_cb) {
      // part_mode (9.3.3.7, contexts per Table 9-41)
      if (dec(ctx::PART_MODE + 0)) {
        part_mode_ = PART_2Nx2N;
      } else if (intra) {
        part_mode_ = PART_NxN;
      } else if (log2_cb == sps_.log2_min_cb) {
        if (dec(ctx::PART_MODE + 1))
          part_mode_ = PART_2NxN;
        else if (log2_cb == 3)
          part_mode_ = PART_Nx2N;
        else
          part_mode_ = dec(ctx::PART_MODE + 2) ? PART_Nx2N : PART_NxN;
      } else if (!sps_.amp_enabled_flag) {
        part_mode_ = dec(ctx::PART_MODE + 1) ? PART_2NxN : PART_Nx2N;
      } else if (dec(ctx::PART_MODE + 1)) {
        part_mode_ = dec(ctx::PART_MODE + 3) ? PART_2NxN : (eng_.bypass() ? PART_2NxnD : PART_2NxnU);
      } else {
        part_mode_ = dec(ctx::PART_MODE + 3) ? PART_Nx2N : (eng_.bypass() ? PART_nRx2N : PART_nLx2N);
      }
    }
    t.part_mode = (uint8_t)part_mode_;
    if (intra) {
      intra_split_ = part_mode_ == PART_NxN;
      if (part_mode_ == PART_2Nx2N && sps_.pcm_enabled_flag && log2_cb >= sps_.log2_min_pcm_cb &&
          log2_cb <= sps_.log2_max_pcm_cb)
        pcm = eng_.terminate();
      if (pcm) {
        pcm_sample(x0, y0, log2_cb);
        t.pcm_flag = 1;
        t.intra_mode = 1;  // DC, as neighbours' MPM derivation sees it
        add_rec(x0, y0, n, n, t);
      } else {
        intra_modes(x0, y0, log2_cb, part_mode_ == PART_NxN);
      }
    } else {
      const int h = n / 2, q = n / 4;
      switch (part_mode_) {
        case PART_2Nx2N: prediction_unit(x0, y0, n, x0, y0, n, n, 0, false); break;
        case PART_2NxN:
          prediction_unit(x0, y0, n, x0, y0, n, h, 0, false);
          prediction_unit(x0, y0, n, x0, y0 + h, n, h, 1, false);
          break;
        case PART_Nx2N:
          prediction_unit(x0, y0, n, x0, y0, h, n, 0, false);
          prediction_unit(x0, y0, n, x0 + h, y0, h, n, 1, false);
          break;
        case PART_2NxnU:
          prediction_unit(x0, y0, n, x0, y0, n, q, 0, false);
          prediction_unit(x0, y0, n, x0, y0 + q, n, n * 3 / 4, 1, false);
          break;
        case PART_2NxnD:
          prediction_unit(x0, y0, n, x0, y0, n, n * 3 / 4, 0, false);
          prediction_unit(x0, y0, n, x0, y0 + n * 3 / 4, n, q, 1, false);
          break;
        case PART_nLx2N:
          prediction_unit(x0, y0, n, x0, y0, q, n, 0, false);
          prediction_unit(x0, y0, n, x0 + q, y0, n * 3 / 4, n, 1, false);
          break;
        case PART_nRx2N:
          prediction_unit(x0, y0, n, x0, y0, n * 3 / 4, n, 0, false);
          prediction_unit(x0, y0, n, x0 + n * 3 / 4, y0, q, n, 1, false);
          break;
        default:  // NxN
          prediction_unit(x0, y0, n, x0, y0, h, h, 0, false);
          prediction_unit(x0, y0, n, x0 + h, y0, h, h, 1, false);
          prediction_unit(x0, y0, n, x0, y0 + h, h, h, 2, false);
          prediction_unit(x0, y0, n, x0 + h, y0 + h, h, h, 3, false);
          break;
      }
    }
    if (!pcm) {
      int rqt_root_cbf = 1;
      if (!intra && !(part_mode_ == PART_2Nx2N && merge_flag_2nx2n_)) rqt_root_cbf = dec(ctx::RQT_ROOT_CBF);
      if (rqt_root_cbf) {
        max_trafo_depth_ =
            intra ? sps_.max_transform_hierarchy_depth_intra + intra_split_ : sps_.max_transform_hierarchy_depth_inter;
        transform_tree(x0, y0, x0, y0, log2_cb, 0, 0, 0, 0);
        has_tt = true;
      }
    }
  }
  // QpY (8.6.1); without cu_qp_delta every CU has the slice QP.
  if (pps_.cu_qp_delta_enabled_flag) {
    const int off = sps_.QpBdOffsetY;
    qp_y_ = ((qp_y_pred_ + cu_qp_delta_val_ + 52 + 2 * off) % (52 + off)) - off;
  } else {
    qp_y_ = sh_.SliceQpY;
  }
  for (int i = 0; i < cu_nrec_; ++i) {
    PuRec& r = pr_.recs[cu_recs_[i]];
    r.qp_y = (int8_t)qp_y_;
    r.residual = (uint8_t)(cu_residual_ != 0);
    r.has_tt = has_tt;
  }
}

void SliceDecoder::pcm_sample(int x0, int y0, int log2_cb) {
  if (!eng_.check_stop_pattern()) fail("pcm_flag", "PCM samples are not byte-aligned after pcm_flag");
  const int n = 1 << log2_cb;
  int64_t bits = (int64_t)n * n * sps_.pcm_bit_depth_luma;
  if (sps_.ChromaArrayType != 0)
    bits += 2 * (int64_t)(n / sps_.SubWidthC) * (n / sps_.SubHeightC) * sps_.pcm_bit_depth_chroma;
  const int64_t bytes = (bits + 7) / 8;
  const uint8_t* p = eng_.position();
  if (bytes > eng_.end() - p) fail("pcm_sample", "PCM samples run past the slice data");
  eng_.start(p + bytes, eng_.end());
}

void SliceDecoder::intra_modes(int x0, int y0, int log2_cb, bool nxn) {
  const int nparts = nxn ? 4 : 1;
  const int pb = nxn ? (1 << (log2_cb - 1)) : (1 << log2_cb);
  int prev[4], idx[4];
  for (int k = 0; k < nparts; ++k) prev[k] = dec(ctx::PREV_INTRA_LUMA_PRED_FLAG);
  for (int k = 0; k < nparts; ++k) {
    if (prev[k]) {
      idx[k] = eng_.bypass() ? (eng_.bypass() ? 2 : 1) : 0;
    } else {
      idx[k] = (int)eng_.bypass_bits(5);
    }
  }
  for (int k = 0; k < nparts; ++k) {
    const int xPb = x0 + (k & 1) * pb, yPb = y0 + (k >> 1) * pb;
    int cand[2];
    for (int c = 0; c < 2; ++c) {
      const int xN = c == 0 ? xPb - 1 : xPb, yN = c == 0 ? yPb : yPb - 1;
      int m = 1;  // INTRA_DC
      if (available_zs(xPb, yPb, xN, yN)) {
        const PuRec& r = rec(xN, yN);
        // PCM records carry intra_mode 1 (DC), which is what the derivation uses for them
        if (r.pred_mode == PM_INTRA && !(c == 1 && yPb - 1 < ((yPb >> log2_ctb_) << log2_ctb_))) m = r.intra_mode;
      }
      cand[c] = m;
    }
    int list[3];
    if (cand[0] == cand[1]) {
      if (cand[0] < 2) {
        list[0] = 0;
        list[1] = 1;
        list[2] = 26;
      } else {
        list[0] = cand[0];
        list[1] = 2 + ((cand[0] + 29) % 32);
        list[2] = 2 + ((cand[0] - 2 + 1) % 32);
      }
    } else {
      list[0] = cand[0];
      list[1] = cand[1];
      if (cand[0] != 0 && cand[1] != 0)
        list[2] = 0;
      else if (cand[0] != 1 && cand[1] != 1)
        list[2] = 1;
      else
        list[2] = 26;
    }
    int mode;
    if (prev[k]) {
      mode = list[idx[k]];
    } else {
      std::sort(list, list + 3);
      mode = idx[k];
      for (int i = 0; i < 3; ++i)
        if (mode >= list[i]) mode++;
    }
    intra_mode_y_[k] = mode;
    PuRec r = cu_rec_;
    r.intra_mode = (uint8_t)mode;
    add_rec(xPb, yPb, pb, pb, r);
  }
  // chroma
  int nc = 0;
  if (sps_.ChromaArrayType == 3)
    nc = nparts;
  else if (sps_.ChromaArrayType != 0)
    nc = 1;
  for (int k = 0; k < nc; ++k) {
    intra_chroma_pred_mode_[k] = dec(ctx::INTRA_CHROMA_PRED_MODE) ? (int)eng_.bypass_bits(2) : 4;
  }
  for (int k = 0; k < nc; ++k) {
    const int luma = intra_mode_y_[sps_.ChromaArrayType == 3 ? k : 0];
    int m;
    const int icpm = intra_chroma_pred_mode_[k];
    if (icpm == 4) {
      m = luma;
    } else {
      static const int kModes[4] = {0, 26, 10, 1};
      m = kModes[icpm];
      if (m == luma) m = 34;
    }
    if (sps_.ChromaArrayType == 2) m = kMode422[m];
    intra_mode_c_[k] = m;
  }
  if (nc == 1)
    for (int k = 1; k < 4; ++k) {
      intra_mode_c_[k] = intra_mode_c_[0];
      intra_chroma_pred_mode_[k] = intra_chroma_pred_mode_[0];
    }
}

void SliceDecoder::mvd_coding(Mv& mvd) {
  const int g0x = dec(ctx::ABS_MVD_GREATER0);
  const int g0y = dec(ctx::ABS_MVD_GREATER0);
  const int g1x = g0x ? dec(ctx::ABS_MVD_GREATER1) : 0;
  const int g1y = g0y ? dec(ctx::ABS_MVD_GREATER1) : 0;
  int32_t v[2] = {0, 0};
  const int g0[2] = {g0x, g0y}, g1[2] = {g1x, g1y};
  for (int c = 0; c < 2; ++c) {
    if (!g0[c]) continue;
    int32_t a = 1;
    if (g1[c]) {
      // abs_mvd_minus2: EG1
      int k = 1;
      uint32_t base = 0;
      while (eng_.bypass()) {
        base += 1u << k;
        if (++k > 16) fail("abs_mvd_minus2", "abs_mvd_minus2 exceeds the MV range");
      }
      a = 2 + (int32_t)(base + eng_.bypass_bits(k));
      if (a > (1 << 15)) fail("abs_mvd_minus2", "abs_mvd_minus2 exceeds the MV range");
    }
    v[c] = eng_.bypass() ? -a : a;
  }
  mvd.x = v[0];
  mvd.y = v[1];
}

void SliceDecoder::prediction_unit(int xCb, int yCb, int nCbS, int xPb, int yPb, int w, int h, int part_idx,
                                   bool skip) {
  int merge = skip;
  if (!skip) merge = dec_likely(ctx::MERGE_FLAG);
  if (part_idx == 0) merge_flag_2nx2n_ = merge;
  int merge_idx = 0;
  int ref_idx[2] = {-1, -1}, mvp[2] = {0, 0};
  Mv mvd[2] = {{0, 0}, {0, 0}};
  if (merge) {
    if (sh_.max_num_merge_cand > 1) {
      if (dec_likely(ctx::MERGE_IDX)) {
        merge_idx = 1;
        while (merge_idx < sh_.max_num_merge_cand - 1 && eng_.bypass()) ++merge_idx;
      }
    }
  } else {
    int idc = 0;  // 0 PRED_L0, 1 PRED_L1, 2 PRED_BI
    if (sh_.slice_type == SLICE_B) {
      if (w + h != 12 && dec(ctx::INTER_PRED_IDC + ct_depth_))
        idc = 2;
      else
        idc = dec(ctx::INTER_PRED_IDC + 4);
    }
    for (int X = 0; X < 2; ++X) {
      if ((X == 0 && idc == 1) || (X == 1 && idc == 0)) continue;
      int r = 0;
      const int nref = sh_.num_ref_idx_active[X];
      if (nref > 1) {
        while (r < nref - 1) {
          int bin = r < 2 ? dec(ctx::REF_IDX + r) : eng_.bypass();
          if (!bin) break;
          ++r;
        }
      }
      ref_idx[X] = r;
      if (X == 1 && sh_.mvd_l1_zero_flag && idc == 2)
        mvd[1] = {0, 0};
      else
        mvd_coding(mvd[X]);
      mvp[X] = dec(ctx::MVP_FLAG);
    }
  }
  PuRec r = cu_rec_;
  r.merge_flag = (uint8_t)merge;
  if (derive_now_ && !derive_now_->derive_failed) {
    // Parsed in the decoder's thread: derived now, while everything is in cache (the same
    // vectors as later: derivation reads only earlier PUs and the finished collocated picture).
    try {
      PuMotion m;
      if (merge)
        derive_merge(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, merge_idx, m);
      else
        amvp_motion(xCb, yCb, nCbS, xPb, yPb, w, h, part_idx, ref_idx, mvp, mvd, m);
      store_motion(r, m);
      add_rec(xPb, yPb, w, h, r);
      return;
    } catch (const BitstreamError&) {
      // From here on this slice is derived at the end of the picture, which fails at this
      // PU again and conceals as a worker's pass would.
      derive_now_->derive_failed = true;
      r = cu_rec_;
      r.merge_flag = (uint8_t)merge;
    }
  }
  // The record goes into the grid now (parsing reads its mode and size); the motion comes
  // with derive_pending.
  PendingPu p;
  p.ctb_rs = ctb_addr_rs_;
  p.x_cb = (uint16_t)xCb;
  p.y_cb = (uint16_t)yCb;
  p.x_pb = (uint16_t)xPb;
  p.y_pb = (uint16_t)yPb;
  p.n_cb = (uint8_t)nCbS;
  p.w = (uint8_t)w;
  p.h = (uint8_t)h;
  p.part_idx = (uint8_t)part_idx;
  p.part_mode = (uint8_t)part_mode_;
  p.merge = (uint8_t)merge;
  p.merge_idx = (uint8_t)merge_idx;
  p.pad_ = 0;
  for (int X = 0; X < 2; ++X) {
    p.ref_idx[X] = (int8_t)ref_idx[X];
    p.mvp[X] = (uint8_t)mvp[X];
    p.mvd[X * 2] = mvd[X].x;
    p.mvd[X * 2 + 1] = mvd[X].y;
  }
  p.rec = add_rec(xPb, yPb, w, h, r);
  (sink_ ? sink_->pending : st_.pending).push_back(p);
}

void SliceDecoder::transform_tree(int x0, int y0, int xBase, int yBase, int log2_size, int depth, int blk_idx,
                                  int parent_cbf_cb, int parent_cbf_cr) {
  int split;
  if (log2_size <= sps_.log2_max_tb && log2_size > sps_.log2_min_tb && depth < max_trafo_depth_ &&
      !(intra_split_ && depth == 0)) {
    split = dec(ctx::SPLIT_TRANSFORM_FLAG + 5 - log2_size);
  } else {
    const bool inter_split = sps_.max_transform_hierarchy_depth_inter == 0 && cu_pred_mode_ == PM_INTER &&
                             part_mode_ != PART_2Nx2N && depth == 0;
    split = log2_size > sps_.log2_max_tb || (intra_split_ && depth == 0) || inter_split;
  }
  const int cat = sps_.ChromaArrayType;
  int cbf_cb = 0, cbf_cr = 0;
  if ((log2_size > 2 && cat != 0) || cat == 3) {
    const bool two = cat == 2 && (!split || log2_size == 3);
    if (depth == 0 || parent_cbf_cb) {
      cbf_cb = dec(ctx::CBF_CHROMA + depth);
      if (two) cbf_cb |= dec(ctx::CBF_CHROMA + depth) << 1;
    }
    if (depth == 0 || parent_cbf_cr) {
      cbf_cr = dec(ctx::CBF_CHROMA + depth);
      if (two) cbf_cr |= dec(ctx::CBF_CHROMA + depth) << 1;
    }
    cu_residual_ |= cbf_cb | cbf_cr;
  } else if (cat != 0) {
    // 4x4 luma blocks of 4:2:0/4:2:2: chroma is coded once, with blkIdx 3, using the parent's flags
    cbf_cb = parent_cbf_cb;
    cbf_cr = parent_cbf_cr;
  }
  if (split) {
    const int h = 1 << (log2_size - 1);
    transform_tree(x0, y0, x0, y0, log2_size - 1, depth + 1, 0, cbf_cb, cbf_cr);
    transform_tree(x0 + h, y0, x0, y0, log2_size - 1, depth + 1, 1, cbf_cb, cbf_cr);
    transform_tree(x0, y0 + h, x0, y0, log2_size - 1, depth + 1, 2, cbf_cb, cbf_cr);
    transform_tree(x0 + h, y0 + h, x0, y0, log2_size - 1, depth + 1, 3, cbf_cb, cbf_cr);
  } else {
    int cbf_luma = 1;
    if (cu_pred_mode_ == PM_INTRA || depth != 0 || cbf_cb || cbf_cr)
      cbf_luma = dec(ctx::CBF_LUMA + (depth == 0 ? 1 : 0));
    cu_residual_ |= cbf_luma;
    transform_unit(x0, y0, xBase, yBase, log2_size, depth, blk_idx, cbf_luma, cbf_cb, cbf_cr);
  }
}

void SliceDecoder::cu_qp_delta() {
  int v = 0;
  while (v < 5 && dec(ctx::CU_QP_DELTA_ABS + (v == 0 ? 0 : 1))) ++v;
  if (v == 5) {
    // EG0 suffix
    int k = 0;
    uint32_t base = 0;
    while (eng_.bypass()) {
      base += 1u << k;
      if (++k > 16) fail("cu_qp_delta_abs", "cu_qp_delta_abs out of range");
    }
    v += (int)(base + eng_.bypass_bits(k));
  }
  const int lim = 26 + sps_.QpBdOffsetY / 2;
  if (v > lim) fail("cu_qp_delta_abs", "cu_qp_delta_abs out of range");
  int val = v;
  if (v && eng_.bypass()) val = -v;
  if (val > 25 + sps_.QpBdOffsetY / 2) fail("cu_qp_delta_abs", "CuQpDeltaVal out of range");
  is_cu_qp_delta_coded_ = true;
  cu_qp_delta_val_ = val;
}

void SliceDecoder::chroma_qp_offset() {
  const int flag = dec(ctx::CU_CHROMA_QP_OFFSET_FLAG);
  if (flag && pps_.chroma_qp_offset_list_len > 1) {
    int i = 0;
    while (i < pps_.chroma_qp_offset_list_len - 1 && dec(ctx::CU_CHROMA_QP_OFFSET_IDX)) ++i;
  }
  is_cu_chroma_qp_offset_coded_ = true;
}

void SliceDecoder::cross_comp_pred(int c) {
  int v = 0;
  while (v < 4 && dec(ctx::LOG2_RES_SCALE_ABS + 4 * c + v)) ++v;
  if (v) dec(ctx::RES_SCALE_SIGN_FLAG + c);
}

void SliceDecoder::transform_unit(int x0, int y0, int xBase, int yBase, int log2_size, int depth, int blk_idx,
                                  int cbf_luma, int cbf_cb, int cbf_cr) {
  const int cat = sps_.ChromaArrayType;
  const int cbf_chroma = cbf_cb | cbf_cr;
  fill_rect<uint8_t>(pr_.tu.data(), g(x0, y0), gw_, 1 << (log2_size - 2), 1 << (log2_size - 2), (uint8_t)log2_size);
  if (!(cbf_luma || cbf_chroma)) return;
  if (pps_.cu_qp_delta_enabled_flag && !is_cu_qp_delta_coded_) cu_qp_delta();
  if (sh_.cu_chroma_qp_offset_enabled_flag && cbf_chroma && !cu_transquant_bypass_ && !is_cu_chroma_qp_offset_coded_)
    chroma_qp_offset();
  if (cbf_luma) residual_coding(x0, y0, log2_size, 0);
  if (cat == 0) return;
  const int ntb = cat == 2 ? 2 : 1;
  if (log2_size > 2 || cat == 3) {
    const int log2c = cat == 3 ? log2_size : log2_size - 1;
    const bool cross = pps_.cross_component_prediction_enabled_flag && cbf_luma &&
                       (cu_pred_mode_ != PM_INTRA || intra_chroma_pred_mode_[pu_index_at(x0, y0)] == 4);
    if (cross) cross_comp_pred(0);
    for (int t = 0; t < ntb; ++t)
      if (cbf_cb & (1 << t)) residual_coding(x0, y0 + (t << log2c), log2c, 1);
    if (cross) cross_comp_pred(1);
    for (int t = 0; t < ntb; ++t)
      if (cbf_cr & (1 << t)) residual_coding(x0, y0 + (t << log2c), log2c, 2);
  } else if (blk_idx == 3) {
    for (int t = 0; t < ntb; ++t)
      if (cbf_cb & (1 << t)) residual_coding(xBase, yBase + (t << 2), 2, 1);
    for (int t = 0; t < ntb; ++t)
      if (cbf_cr & (1 << t)) residual_coding(xBase, yBase + (t << 2), 2, 2);
  }
}

}  // namespace bitsr
