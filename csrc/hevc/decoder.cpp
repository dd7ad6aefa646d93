#include "hevc/decoder.h"

#include <algorithm>
#include <cstring>

#include "bitstream/nal.h"
#include "common/error.h"
#include "hevc/slice_data.h"

namespace bitsr {

Decoder::Decoder(const DecoderOptions& opts) : opts_(opts) {}
Decoder::~Decoder() = default;

void Decoder::report(const std::exception& e, const char* what) {
  std::string msg = std::string(what) + ": " + e.what();
  warnings_.push_back(msg);
  if (warnings_.size() > 1000) warnings_.erase(warnings_.begin());
}

void Decoder::push_annexb(const uint8_t* data, size_t size, int64_t base_offset) {
  std::vector<NalSpan> nals;
  split_annexb(data, size, nals);
  for (auto& n : nals) push_nal(n.data, n.size, base_offset + (int64_t)n.offset);
}

void Decoder::push_annexb_chunk(const uint8_t* data, size_t size, bool final) {
  pending_.insert(pending_.end(), data, data + size);
  size_t cut = pending_.size();
  if (!final) {
    // keep everything from the last start code on: its NAL may continue in the next chunk
    size_t i = pending_.size();
    cut = 0;
    while (i >= 3) {
      --i;
      if (pending_[i] == 1 && pending_[i - 1] == 0 && pending_[i - 2] == 0) {
        cut = i - 2;
        break;
      }
    }
    if (cut == 0) {
      if ((int64_t)pending_.size() > opts_.limits.max_nal_size)
        throw LimitError("no start code in " + std::to_string(pending_.size()) + " bytes; NAL unit exceeds the limit");
      return;
    }
  }
  push_annexb(pending_.data(), cut, pending_offset_);
  pending_.erase(pending_.begin(), pending_.begin() + cut);
  pending_offset_ += (int64_t)cut;
  if (final) {
    pending_.clear();
    pending_.shrink_to_fit();
  }
}

void Decoder::push_length_prefixed(const uint8_t* data, size_t size, int length_size, int64_t base_offset) {
  std::vector<NalSpan> nals;
  try {
    split_length_prefixed(data, size, length_size, nals);
  } catch (BitstreamError& e) {
    e.nal_index = nal_index_ + 1;
    e.byte_offset = base_offset;
    if (opts_.strict) throw;
    report(e, "packet");
  }
  for (auto& n : nals) push_nal(n.data, n.size, base_offset + (int64_t)n.offset);
}

int Decoder::push_hvcc(const uint8_t* data, size_t size) {
  std::vector<NalSpan> nals;
  int len = parse_hvcc(data, size, nals);
  for (auto& n : nals) push_nal(n.data, n.size, (int64_t)n.offset);
  return len;
}

ActiveParams Decoder::activate(int pps_id) {
  ActiveParams ap;
  ap.pps = pps_[pps_id];
  if (!ap.pps) fail("slice_pic_parameter_set_id", "slice refers to PPS " + std::to_string(pps_id) + ", which was not received");
  ap.sps = sps_[ap.pps->sps_id];
  if (!ap.sps)
    fail("pps_seq_parameter_set_id", "PPS " + std::to_string(pps_id) + " refers to SPS " + std::to_string(ap.pps->sps_id) +
                                         ", which was not received");
  ap.vps = vps_[ap.sps->vps_id];
  if (ap.sps != maps_sps_ || ap.pps != maps_pps_) {
    maps_ = derive_scan_maps(*ap.sps, *ap.pps);
    maps_sps_ = ap.sps;
    maps_pps_ = ap.pps;
  }
  ap.maps = maps_;
  return ap;
}

void Decoder::push_nal(const uint8_t* data, size_t size, int64_t offset) {
  ++nal_index_;
  nal_offset_ = offset;
  try {
    if ((int64_t)size > opts_.limits.max_nal_size) throw LimitError("NAL unit of " + std::to_string(size) + " bytes exceeds the limit");
    NalHeader h = parse_nal_header(data, size);
    const bool vcl = h.type < 32;
    if (h.layer_id > 0) {
      if (vcl && h.type <= NAL_CRA)
        throw UnsupportedError("multi-layer stream (nuh_layer_id " + std::to_string(h.layer_id) +
                               "): only single-layer HEVC is supported");
      return;
    }
    switch (h.type) {
      case NAL_VPS:
      case NAL_SPS:
      case NAL_PPS: {
        epb_.clear();
        unescape_rbsp(data, size, rbsp_, nullptr);
        BitReader br(rbsp_.data() + 2, rbsp_.size() - 2);
        // A parameter set re-sent with identical content keeps its object, so repeating
        // SPS/PPS at every IRAP (as x265 does) is not mistaken for a change.
        std::vector<uint8_t> raw(rbsp_.begin() + 2, rbsp_.end());
        if (h.type == NAL_VPS) {
          auto v = parse_vps(br);
          vps_[v->vps_id] = v;
        } else if (h.type == NAL_SPS) {
          auto s = parse_sps(br, opts_.limits);
          if (!sps_[s->sps_id] || sps_raw_[s->sps_id] != raw) {
            sps_[s->sps_id] = s;
            sps_raw_[s->sps_id] = std::move(raw);
          }
        } else {
          auto p = parse_pps(br);
          if (!pps_[p->pps_id] || pps_raw_[p->pps_id] != raw) {
            pps_[p->pps_id] = p;
            pps_raw_[p->pps_id] = std::move(raw);
          }
        }
        break;
      }
      case NAL_AUD:
        finish_picture();
        break;
      case NAL_EOS:
      case NAL_EOB:
        finish_picture();
        after_eos_ = true;  // the next picture is an IRAP with NoRaslOutputFlag = 1
        break;
      default:
        if (h.type <= NAL_RASL_R || (h.type >= NAL_BLA_W_LP && h.type <= NAL_CRA))
          handle_slice(data, size, h.type, h.temporal_id);
        // reserved VCL types, SEI and the rest carry nothing bitsr uses
        break;
    }
  } catch (BitstreamError& e) {
    e.nal_index = nal_index_;
    e.byte_offset = offset;
    if (opts_.strict) throw;
    report(e, ("NAL " + std::to_string(nal_index_) + " at byte " + std::to_string(offset)).c_str());
    if (cur_) cur_->errors.push_back(e.what());
  } catch (LimitError&) {
    throw;
  } catch (UnsupportedError&) {
    throw;
  }
}

static bool first_slice_flag(const uint8_t* data, size_t size) { return size > 2 && (data[2] & 0x80); }

void Decoder::handle_slice(const uint8_t* data, size_t size, int nal_type, int temporal_id) {
  if (first_slice_flag(data, size)) finish_picture();
  epb_.clear();
  unescape_rbsp(data, size, rbsp_, &epb_);
  BitReader br(rbsp_.data() + 2, rbsp_.size() - 2);
  SliceHeader sh;
  ActiveParams params;
  bool first = first_slice_flag(data, size);
  if (!first && (!cur_ || skipping_)) {
    if (skipping_) return;  // rest of a skipped picture
    // A picture whose first slice segment was lost: nothing to attach this slice to.
    fail("first_slice_segment_in_pic_flag", "slice segment without the first slice segment of its picture");
  }
  bool dep_peek = false;
  (void)dep_peek;
  parse_slice_header(br, nal_type, *this, have_cur_sh_ && !first ? &cur_sh_ : nullptr, opts_.limits, sh, params);
  if (first) {
    if (!begin_picture(sh, params, nal_type, temporal_id)) return;
  } else {
    if (params.pps != cur_->pps && params.pps->pps_id != cur_->pps->pps_id)
      fail("slice_pic_parameter_set_id", "slice segments of one picture use different PPSs");
    if (nal_type != cur_->nal_type) fail("nal_unit_type", "slice segments of one picture have different NAL unit types");
  }
  if (sh.dependent_slice_segment_flag && !have_cur_sh_)
    fail("dependent_slice_segment_flag", "dependent slice segment without a preceding independent one");
  if ((int)cur_->slices.size() >= opts_.limits.max_slice_segments_per_picture)
    throw LimitError("more than " + std::to_string(opts_.limits.max_slice_segments_per_picture) + " slice segments in a picture");
  if (!sh.dependent_slice_segment_flag) {
    cur_sh_ = sh;
    have_cur_sh_ = true;
  }
  // Reference lists of this slice.
  RefList lists[2];
  Dpb::build_lists(sh, cur_rps_, lists);
  for (int l = 0; l < 2; ++l)
    for (int i = 0; i < lists[l].n; ++i)
      if (!lists[l].pic[i]) {
        // Missing reference that the RPS step did not generate (should not happen).
        fail("RefPicList", "reference picture with POC " + std::to_string(lists[l].poc[i]) + " is missing");
      }
  SliceInfo info;
  info.slice_segment_address = sh.slice_segment_address;
  info.dependent = sh.dependent_slice_segment_flag;
  info.slice_type = sh.slice_type;
  info.slice_qp = sh.SliceQpY;
  for (int l = 0; l < 2; ++l) {
    info.num_ref_idx[l] = lists[l].n;
    for (int i = 0; i < lists[l].n; ++i) {
      info.ref_poc[l][i] = lists[l].poc[i];
      info.ref_is_lt[l][i] = lists[l].is_lt[i];
    }
  }
  info.temporal_mvp = sh.slice_temporal_mvp_enabled_flag;
  info.collocated_from_l0 = sh.collocated_from_l0_flag;
  info.collocated_ref_idx = sh.collocated_ref_idx;
  info.max_num_merge_cand = sh.max_num_merge_cand;
  info.has_weights = (params.pps->weighted_pred_flag && sh.slice_type == SLICE_P) ||
                     (params.pps->weighted_bipred_flag && sh.slice_type == SLICE_B);
  info.pwt = sh.pwt;
  info.deblocking_disabled = sh.slice_deblocking_filter_disabled_flag;
  info.sao_luma = sh.slice_sao_luma_flag;
  info.sao_chroma = sh.slice_sao_chroma_flag;
  info.nal_index = (size_t)nal_index_;
  cur_->slices.push_back(info);
  cur_->num_slice_segments++;

  if (!opts_.parse_ctu) return;
  const Picture* col = nullptr;
  if (sh.slice_temporal_mvp_enabled_flag && sh.slice_type != SLICE_I) {
    const RefList& L = lists[sh.collocated_from_l0_flag ? 0 : 1];
    col = L.pic[sh.collocated_ref_idx];
  }
  SliceDataInput in;
  in.sh = &sh;
  in.lists = lists;
  in.col_pic = col;
  const size_t hdr = 2 + sh.header_bits / 8;  // slice data start in the unescaped NAL
  in.data = rbsp_.data() + hdr;
  in.size = rbsp_.size() - hdr;
  // Entry points count escaped bytes from the first byte of the slice data (7.4.7.1).
  if (sh.num_entry_point_offsets > 0) {
    // escaped position of the slice data start
    size_t esc_start = hdr;
    for (uint32_t p : epb_)
      if (p < esc_start + 1) ++esc_start;  // each EPB before the data shifts it by one
      else break;
    uint64_t esc = esc_start;
    size_t k = 0;
    for (uint32_t off : sh.entry_point_offset) {
      esc += off;
      while (k < epb_.size() && epb_[k] < esc) ++k;
      uint64_t unesc = esc - k;
      // Some encoders signal entry points at the very end of the data or count the
      // substreams of the following dependent slice segments too; HM and FFmpeg decode those
      // streams. Substreams are contiguous, so the CABAC position suffices: entry points
      // are used as a cross-check only when all of them lie inside this segment.
      if (unesc <= hdr || unesc - hdr > in.size) {
        in.entry_points.clear();
        break;
      }
      in.entry_points.push_back((size_t)(unesc - hdr));
    }
  }
  decode_slice_data(*state_, in);
}

bool Decoder::begin_picture(const SliceHeader& sh, const ActiveParams& params, int nal_type, int temporal_id) {
  const Sps& sps = *params.sps;
  const bool irap = is_irap(nal_type);
  bool no_rasl = false;
  if (irap) {
    no_rasl = is_idr(nal_type) || is_bla(nal_type) || first_picture_ || after_eos_;
    assoc_irap_no_rasl_ = no_rasl;
    seen_irap_ = true;
  }
  // Pictures before the first IRAP, and RASL pictures of a CRA that starts decoding, cannot
  // be decoded correctly; HM and FFmpeg drop them, and so do we.
  if (!seen_irap_ || (is_rasl(nal_type) && assoc_irap_no_rasl_)) {
    skipping_ = true;
    ++skipped_pictures_;
    return false;
  }
  skipping_ = false;
  if (irap && no_rasl && (!active_sps_ || active_sps_ != params.sps)) active_sps_ = params.sps;
  if (!active_sps_) active_sps_ = params.sps;
  if (params.sps != active_sps_) {
    // SPS may change only at an IRAP with NoRaslOutputFlag.
    fail("pps_seq_parameter_set_id", "active SPS changed inside a coded video sequence");
  }
  // POC (8.3.1)
  const int max_lsb = 1 << sps.log2_max_poc_lsb;
  int64_t poc;
  if (irap && no_rasl) {
    poc = sh.slice_pic_order_cnt_lsb;
  } else {
    int prev_lsb = prev_tid0_poc_ & (max_lsb - 1);
    int64_t prev_msb = (int64_t)prev_tid0_poc_ - prev_lsb;
    int lsb = sh.slice_pic_order_cnt_lsb;
    int64_t msb;
    if (lsb < prev_lsb && prev_lsb - lsb >= max_lsb / 2)
      msb = prev_msb + max_lsb;
    else if (lsb > prev_lsb && lsb - prev_lsb > max_lsb / 2)
      msb = prev_msb - max_lsb;
    else
      msb = prev_msb;
    poc = msb + lsb;
  }
  if (poc < -(int64_t(1) << 30) || poc > (int64_t(1) << 30)) fail("slice_pic_order_cnt_lsb", "POC out of range");
  auto pic = std::make_shared<Picture>();
  pic->poc = (int32_t)poc;
  pic->nal_type = nal_type;
  pic->slice_type = sh.slice_type;
  pic->temporal_id = temporal_id;
  pic->no_rasl_output_flag = irap && no_rasl;
  pic->pic_output_flag = sh.pic_output_flag;
  pic->sps = params.sps;
  pic->pps = params.pps;
  if (irap && no_rasl) ++cvs_index_;
  if (cvs_index_ < 0) cvs_index_ = 0;
  pic->cvs_index = cvs_index_;
  if (temporal_id == 0 && !is_rasl(nal_type) && !is_radl(nal_type) && !is_slnr(nal_type)) prev_tid0_poc_ = pic->poc;

  // RPS and marking, then generation of missing references (8.3.3).
  cur_rps_ = dpb_.apply_rps(sh, sps, *pic, irap && no_rasl);
  auto gen = [&](std::vector<PicturePtr>& v, const std::vector<int32_t>& pocs, bool lt) {
    for (size_t i = 0; i < v.size(); ++i)
      if (!v[i]) {
        v[i] = generate_missing(pocs[i], lt, params);
        if (!(is_irap(nal_type) && no_rasl) && !is_rasl(nal_type))
          warnings_.push_back("picture POC " + std::to_string(pic->poc) + ": reference POC " + std::to_string(pocs[i]) +
                              " is missing; generated");
      }
  };
  gen(cur_rps_.st_curr_before, cur_rps_.poc_st_curr_before, false);
  gen(cur_rps_.st_curr_after, cur_rps_.poc_st_curr_after, false);
  gen(cur_rps_.lt_curr, cur_rps_.poc_lt_curr, true);

  // Output and removal of pictures from the DPB (C.5.2.2).
  // C.5.2.2: a CRA that starts a new sequence (after EOS) discards the pictures still
  // waiting for output, whatever no_output_of_prior_pics_flag says; FFmpeg does the same.
  const bool no_output_prior = nal_type == NAL_CRA ? true : sh.no_output_of_prior_pics_flag;
  dpb_.output_before_decode(sps, irap && no_rasl, first_picture_, no_output_prior, output);
  // Generated pictures must stay referable for this picture even if the DPB was emptied.
  for (auto* v : {&cur_rps_.st_curr_before, &cur_rps_.st_curr_after, &cur_rps_.lt_curr})
    for (auto& p : *v)
      if (p->generated && std::find(dpb_.pics.begin(), dpb_.pics.end(), p) == dpb_.pics.end()) dpb_.pics.push_back(p);
  while ((int)dpb_.pics.size() >= opts_.limits.max_dpb_pictures) {
    // Non-conforming stream: drop the oldest picture to keep memory bounded.
    warnings_.push_back("DPB overflow; dropping a picture");
    dpb_.pics.front()->needed_for_output = false;
    dpb_.pics.erase(dpb_.pics.begin());
  }

  pic->decode_index = decode_count_++;
  cur_ = pic;
  have_cur_sh_ = false;
  first_picture_ = false;
  after_eos_ = false;
  state_ = std::make_unique<PictureState>(*pic, params, rec_hint_ + rec_hint_ / 4);
  return true;
}

PicturePtr Decoder::generate_missing(int32_t poc, bool long_term, const ActiveParams& params) {
  auto p = std::make_shared<Picture>();
  p->poc = poc;
  p->generated = true;
  p->pic_output_flag = false;
  p->is_reference = true;
  p->is_long_term = long_term;
  p->sps = params.sps;
  p->pps = params.pps;
  p->cvs_index = cvs_index_;
  p->nal_type = -1;
  const Sps& s = *params.sps;
  p->pr.allocate((s.width + 3) / 4, (s.height + 3) / 4, (size_t)s.PicSizeInCtbsY);
  fill_intra(*p, 26 + params.pps->init_qp_minus26);
  return p;
}

void Decoder::finish_picture() {
  if (!cur_) {
    skipping_ = false;
    return;
  }
  PicturePtr pic = cur_;
  conceal_missing_ctbs(*state_);
  rec_hint_ = pic->pr.nrec;
  state_.reset();
  cur_.reset();
  have_cur_sh_ = false;
  // C.5.2.3: store, mark as short-term reference, additional bumping.
  pic->is_reference = true;
  pic->is_long_term = false;
  pic->needed_for_output = pic->pic_output_flag;
  for (auto& p : dpb_.pics)
    if (p->needed_for_output) p->latency_count++;
  pic->latency_count = 0;
  dpb_.pics.push_back(pic);
  decoded.push_back(pic);
  dpb_.output_after_store(*pic->sps, output);
}

void Decoder::end_access_unit() { finish_picture(); }

void Decoder::flush() {
  finish_picture();
  dpb_.flush(output);
}

bool Decoder::bump_one() { return dpb_.bump(output); }

}  // namespace bitsr
