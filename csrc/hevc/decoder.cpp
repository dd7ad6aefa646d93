#include "hevc/decoder.h"

#include <algorithm>
#include <cstring>

#include "bitstream/nal.h"
#include "common/error.h"
#include "hevc/frame_threads.h"
#include "hevc/slice_data.h"

namespace bitsr {

Decoder::Decoder(const DecoderOptions& opts) : opts_(opts) {
  if (opts_.threads < 0 || opts_.threads > 256) throw std::invalid_argument("threads must be in [0, 256]");
  if (opts_.max_in_flight < 0) throw std::invalid_argument("max_in_flight must be >= 0");
  max_in_flight_ = opts_.max_in_flight ? opts_.max_in_flight : 3 * opts_.threads + 4;
  if (opts_.threads > 0) pool_ = FrameThreads::start(opts_.threads, opts_.background);
}
Decoder::~Decoder() {
  if (!pool_) return;
  // In a forked child the workers do not exist: waiting for their tasks, or destroying a
  // condition variable they waited on in the parent, would hang. The pool is left as it is.
  if (pool_->forked())
    new std::shared_ptr<FrameThreads>(std::move(pool_));  // never freed, on purpose
  else
    pool_->stop();
}

int Decoder::num_threads() const { return pool_ ? pool_->size() : 0; }
int64_t Decoder::num_row_segments() const { return pool_ ? pool_->row_segments() : 0; }

namespace {

constexpr size_t kMaxWarnings = 1000;        // the most recent ones are kept
constexpr size_t kMaxErrorsPerPicture = 64;  // Picture::errors

// First start code (00 00 01) starting in [from, end - 3]; `end` if there is none.
size_t find_start_code(const uint8_t* d, size_t from, size_t end) {
  while (from + 3 <= end) {
    const void* p = std::memchr(d + from, 0, end - from - 2);
    if (!p) return end;
    const size_t k = (const uint8_t*)p - d;
    if (d[k + 1] == 0 && d[k + 2] == 1) return k;
    from = k + 1;
  }
  return end;
}

}  // namespace

void Decoder::append_warning(std::string msg) {
  if (warnings_.size() >= kMaxWarnings) warnings_.erase(warnings_.begin());
  warnings_.push_back(std::move(msg));
}

// Warnings wait in line behind slice data still being parsed, so they come out in the
// order one thread would give them.
void Decoder::warn(std::string msg) {
  if (items_.empty())
    append_warning(std::move(msg));
  else
    items_.push_back(Item{Item::kWarning, std::move(msg), nullptr, nullptr});
}

bool Decoder::ready(const Item& it) const {
  if (it.kind == Item::kSlice) return it.slice->parsed || (it.job->submitted && pool_->is_done(*it.job));
  if (it.kind == Item::kDecoded) return !it.job || !pool_ || pool_->is_done(*it.job);
  return true;
}

void Decoder::retire(bool wait_all) {
  while (!items_.empty()) {
    if (!ready(items_.front())) {
      // Slices of the picture still being read wait for it to be handed to the workers.
      if (!items_.front().job->submitted) return;
      if (!wait_all && in_flight_ < max_in_flight_) return;
      pool_->wait(*items_.front().job);
    }
    Item it = std::move(items_.front());
    items_.pop_front();
    switch (it.kind) {
      case Item::kWarning: append_warning(std::move(it.text)); break;
      case Item::kPicError: add_error(*it.pic, std::move(it.text)); break;
      case Item::kSlice: emit(it.slice->outcome, *it.job->pic); break;
      case Item::kDecoded:
        if (pool_) {
          --in_flight_;
          rec_hint_ = it.pic->pr.nrec;
        }
        if (it.job) {
          recycle(*it.job);
          // errors of the motion derivation, which ran at the end of the picture
          for (SliceOutcome& o : it.job->late) emit(o, *it.pic);
        }
        decoded.push_back(std::move(it.pic));
        break;
      case Item::kOutput: output.push_back(std::move(it.pic)); break;
    }
  }
}

void Decoder::add_error(Picture& pic, std::string msg) {
  if (pic.errors.size() < kMaxErrorsPerPicture) pic.errors.push_back(std::move(msg));
}

void Decoder::emit(SliceOutcome& o, Picture& pic) {
  if (o.fatal) {
    std::exception_ptr e = o.fatal;
    o.fatal = nullptr;
    std::rethrow_exception(e);
  }
  if (o.warning.empty()) return;
  append_warning(std::move(o.warning));
  add_error(pic, std::move(o.error));
}

void Decoder::recycle(PictureJob& job) {
  if (job.spare.capacity() && spare_pending_.size() < (size_t)max_in_flight_ + 1)
    spare_pending_.push_back(std::move(job.spare));
  job.spare = std::vector<PendingPu>();
}

void Decoder::settle_current() {
  if (pool_ && job_) parse_picture(*job_, true);
}

void Decoder::queue_output(std::deque<PicturePtr>& pics) {
  for (auto& p : pics) {
    if (items_.empty())
      output.push_back(std::move(p));
    else
      items_.push_back(Item{Item::kOutput, {}, std::move(p), nullptr});
  }
  pics.clear();
}

void Decoder::report(const std::exception& e, const char* what) { warn(std::string(what) + ": " + e.what()); }

// Bytes a finished picture holds: block grids, PU records, schema arrays once materialised.
static int64_t picture_bytes(const Picture& p) {
  const int64_t n = (int64_t)p.pr.gw * p.pr.gh;
  return 5 * n + (int64_t)(p.pr.cap * sizeof(PuRec)) + (p.pr.schema.ready ? 30 * n : 0);
}

void Decoder::check_queue_limit(const Sps& sps) const {
  const size_t count = decoded.size() + output.size();
  // Cheap upper bound first (a record per block, materialised arrays): the exact sum is
  // needed only when a consumer lets hundreds of pictures pile up.
  const int64_t n = (int64_t)((sps.width + 3) / 4) * ((sps.height + 3) / 4);
  const int64_t most = 67 * n + 256 * (int64_t)sizeof(PuRec);
  if ((int64_t)count * most <= opts_.limits.max_queued_bytes) return;
  int64_t bytes = 0;
  for (auto& p : decoded) bytes += picture_bytes(*p);
  for (auto& p : output)
    if (std::find(decoded.begin(), decoded.end(), p) == decoded.end()) bytes += picture_bytes(*p);
  if (bytes > opts_.limits.max_queued_bytes)
    throw LimitError(std::to_string(count) + " finished pictures (" + std::to_string(bytes >> 20) +
                     " MiB) wait to be popped, more than max_queued_bytes; pop decoded/output pictures more often");
}

void Decoder::push_annexb(const uint8_t* data, size_t size, int64_t base_offset) {
  std::vector<NalSpan> nals;
  split_annexb(data, size, nals);
  for (auto& n : nals) push_nal(n.data, n.size, base_offset + (int64_t)n.offset);
}

bool Decoder::push_annexb_chunk(const uint8_t* data, size_t size, bool final, size_t yield_pictures) {
  if (size) pending_.insert(pending_.end(), data, data + size);
  const uint8_t* d = pending_.data();
  const size_t n = pending_.size();
  // Complete NAL units end at the last start code; at the end of the stream, at its end.
  size_t cut = n;
  if (!final) {
    // Search backwards, through bytes no earlier call has searched (linear time overall).
    cut = pending_cut_;
    const size_t lo = std::max(pending_scanned_, pending_begin_ + 1);
    for (size_t e = n; e >= lo + 3; --e)
      if (d[e - 1] == 1 && d[e - 2] == 0 && d[e - 3] == 0) {
        cut = e - 3;
        break;
      }
    pending_cut_ = cut;
    pending_scanned_ = n >= 2 ? n - 2 : 0;
    if (cut <= pending_begin_) {
      if ((int64_t)n > opts_.limits.max_nal_size) {
        LimitError e("no start code in " + std::to_string(n) + " bytes: a NAL unit exceeds max_nal_size", "nal_unit");
        e.nal_index = nal_index_ + 1;
        e.byte_offset = pending_offset_;
        throw e;
      }
      return false;
    }
  }
  size_t pos = find_start_code(d, pending_begin_, cut);  // bytes before the first start code are ignored
  while (pos < cut) {
    const size_t start = pos + 3;
    const size_t next = find_start_code(d, start, cut);
    size_t end = next;
    while (end > start && d[end - 1] == 0) --end;  // trailing_zero_8bits, 4-byte start codes
    if (end > start) push_nal(d + start, end - start, pending_offset_ + (int64_t)start);
    pos = next;
    if (yield_pictures && decoded.size() >= yield_pictures && pos < cut) {
      pending_begin_ = pos;
      return true;
    }
  }
  pending_.erase(pending_.begin(), pending_.begin() + cut);
  pending_offset_ += (int64_t)cut;
  pending_scanned_ = pending_scanned_ > cut ? pending_scanned_ - cut : 0;
  pending_begin_ = pending_cut_ = 0;
  if (final) {
    pending_.clear();
    pending_.shrink_to_fit();
    pending_scanned_ = 0;
  }
  return false;
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
  int len = 4;
  try {
    len = parse_hvcc(data, size, nals);
  } catch (BitstreamError& e) {
    // Concealment: keep the parameter sets read so far; they may also come in-band.
    e.byte_offset = 0;
    if (opts_.strict) throw;
    report(e, "hvcC record");
    if (size > 21) len = (data[21] & 3) + 1;
  }
  for (auto& n : nals) push_nal(n.data, n.size, (int64_t)n.offset);
  return len;
}

ActiveParams Decoder::activate(int pps_id) {
  ActiveParams ap;
  ap.pps = pps_[pps_id];
  if (!ap.pps)
    fail("slice_pic_parameter_set_id", "slice refers to PPS " + std::to_string(pps_id) + ", which was not received");
  ap.sps = sps_[ap.pps->sps_id];
  if (!ap.sps)
    fail("pps_seq_parameter_set_id", "PPS " + std::to_string(pps_id) + " refers to SPS " +
                                         std::to_string(ap.pps->sps_id) + ", which was not received");
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
    if ((int64_t)size > opts_.limits.max_nal_size)
      throw LimitError("NAL unit of " + std::to_string(size) + " bytes exceeds max_nal_size", "nal_unit");
    NalHeader h = parse_nal_header(data, size);
    const bool vcl = h.type < 32;
    if (h.layer_id > 0) {
      // Version-1 decoders ignore NAL units of other layers (7.4.2.2), which also decodes the
      // base layer of SHVC/MV-HEVC; strict mode reports that the stream has more.
      if (vcl && h.type <= NAL_CRA) {
        const std::string msg =
            "multi-layer stream (nuh_layer_id " + std::to_string(h.layer_id) + "): only single-layer HEVC is supported";
        if (opts_.strict) throw UnsupportedError(msg, "nuh_layer_id");
        warn("NAL " + std::to_string(nal_index_) + " at byte " + std::to_string(offset) + ": " + msg +
             "; NAL unit ignored");
      }
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
        // SPS/PPS at every IRAP (as x265 does) is not mistaken for a change. Only the bytes
        // the parser read are compared and kept: what follows cannot change the parsed set,
        // and a huge parameter-set NAL unit must not be stored 80 times over.
        auto consumed = [&] { return std::vector<uint8_t>(rbsp_.begin() + 2, rbsp_.begin() + 2 + (br.pos() + 7) / 8); };
        if (h.type == NAL_VPS) {
          auto v = parse_vps(br);
          vps_[v->vps_id] = v;
        } else if (h.type == NAL_SPS) {
          auto s = parse_sps(br, opts_.limits);
          std::vector<uint8_t> raw = consumed();
          if (!sps_[s->sps_id] || sps_raw_[s->sps_id] != raw) {
            sps_[s->sps_id] = s;
            sps_raw_[s->sps_id] = std::move(raw);
          }
        } else {
          auto p = parse_pps(br);
          std::vector<uint8_t> raw = consumed();
          if (!pps_[p->pps_id] || pps_raw_[p->pps_id] != raw) {
            pps_[p->pps_id] = p;
            pps_raw_[p->pps_id] = std::move(raw);
          }
        }
        break;
      }
      case NAL_AUD: finish_picture(); break;
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
    if (opts_.strict) {
      settle_current();  // an error in earlier slice data comes first, as with one thread
      retire(true);
      throw;
    }
    report(e, ("NAL " + std::to_string(nal_index_) + " at byte " + std::to_string(offset)).c_str());
    if (cur_) {  // in line behind slice data still being parsed, like warnings
      if (items_.empty())
        add_error(*cur_, e.what());
      else
        items_.push_back(Item{Item::kPicError, e.what(), cur_, nullptr});
    }
  } catch (StreamError& e) {  // LimitError, UnsupportedError: never concealed
    e.nal_index = nal_index_;
    e.byte_offset = offset;
    settle_current();
    retire(true);
    throw;
  }
  retire(false);
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
    // Same objects, not just the same id: a PPS or SPS re-sent with other content between
    // two slice segments would change the picture size and tiles under the decoder's feet.
    if (params.pps != cur_->pps || params.sps != cur_->sps)
      fail("slice_pic_parameter_set_id", "slice segments of one picture use different parameter sets");
    if (nal_type != cur_->nal_type)
      fail("nal_unit_type", "slice segments of one picture have different NAL unit types");
  }
  if (sh.dependent_slice_segment_flag && !have_cur_sh_)
    fail("dependent_slice_segment_flag", "dependent slice segment without a preceding independent one");
  if ((int)cur_->slices.size() >= opts_.limits.max_slice_segments_per_picture)
    throw LimitError("more than " + std::to_string(opts_.limits.max_slice_segments_per_picture) +
                     " slice segments in a picture");
  if (!sh.dependent_slice_segment_flag) {
    cur_sh_ = sh;
    have_cur_sh_ = true;
  }
  // Reference lists of this slice, from the picture's RPS (derived from its first slice);
  // a slice whose own RPS disagrees in size would index past it.
  const size_t num_curr = cur_rps_.st_curr_before.size() + cur_rps_.st_curr_after.size() + cur_rps_.lt_curr.size();
  if (sh.slice_type != SLICE_I && (size_t)sh.NumPicTotalCurr != num_curr)
    fail("short_term_ref_pic_set", "slice segments of one picture signal different reference picture sets");
  RefList lists[2];
  Dpb::build_lists(sh, cur_rps_, lists);
  for (int l = 0; l < 2; ++l)
    for (int i = 0; i < lists[l].n; ++i)
      if (!lists[l].pic[i]) {
        // Missing reference that the RPS step did not generate (should not happen).
        fail("RefPicList", "reference picture with POC " + std::to_string(lists[l].poc[i]) + " is missing");
      }
  const int slice_idx = (int)cur_->slices.size();
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
    // A generated stand-in for a missing reference has no motion: same as no collocated
    // picture. Pictures of one CVS share the SPS, so a size mismatch means a broken DPB.
    if (col->generated)
      col = nullptr;
    else if (col->pr.gw != cur_->pr.gw || col->pr.gh != cur_->pr.gh)
      fail("collocated_ref_idx", "collocated picture has a different size");
  }
  auto job = std::make_unique<SliceJob>();
  SliceDataInput& in = job->in;
  in.col_pic = col;
  in.slice_idx = slice_idx;
  const size_t hdr = 2 + sh.header_bits / 8;  // slice data start in the unescaped NAL
  in.size = rbsp_.size() - hdr;
  // Entry points count escaped bytes from the first byte of the slice data (7.4.7.1).
  if (sh.num_entry_point_offsets > 0) {
    // escaped position of the slice data start
    size_t esc_start = hdr;
    for (uint32_t p : epb_)
      if (p < esc_start + 1)
        ++esc_start;  // each EPB before the data shifts it by one
      else
        break;
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
  job->nal_index = nal_index_;
  job->offset = nal_offset_;
  SliceJob* sj = job.get();
  job_->slices.push_back(std::move(job));
  // The motion is derived at the end of the picture, and a worker may parse it later:
  // what they read is kept.
  sj->sh = std::move(sh);
  sj->lists[0] = lists[0];
  sj->lists[1] = lists[1];
  if (col)
    for (auto* v : {&cur_rps_.st_curr_before, &cur_rps_.st_curr_after, &cur_rps_.lt_curr})
      for (auto& p : *v)
        if (p.get() == col) sj->col = p;
  in.sh = &sj->sh;
  in.lists = sj->lists;
  if (pool_) {
    sj->data.assign(rbsp_.begin() + (ptrdiff_t)hdr, rbsp_.end());
    in.data = sj->data.data();
    in.helpers = pool_.get();
    in.rows_min_bytes = opts_.wpp_min_bytes;
    in.rows_inter_min_bytes = opts_.wpp_inter_min_bytes;
    items_.push_back(Item{Item::kSlice, {}, nullptr, job_, sj});
    return;
  }
  in.data = rbsp_.data() + hdr;
  in.derive_now = true;  // no workers: each PU's motion is derived as it is parsed
  parse_slice(*job_->state, *sj, opts_.strict);
  in.data = nullptr;  // rbsp_ is reused
  sj->parsed = true;
  if (sj->outcome.fatal || !sj->outcome.warning.empty() || !items_.empty())
    items_.push_back(Item{Item::kSlice, {}, nullptr, job_, sj});
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
  // |POC| < 2^30 keeps every POC difference the motion derivation takes inside an int.
  if (poc <= -(int64_t(1) << 30) || poc >= (int64_t(1) << 30)) fail("slice_pic_order_cnt_lsb", "POC out of range");
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
          warn("picture POC " + std::to_string(pic->poc) + ": reference POC " + std::to_string(pocs[i]) +
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
  std::deque<PicturePtr> out;
  dpb_.output_before_decode(sps, irap && no_rasl, first_picture_, no_output_prior, out);
  queue_output(out);
  // Generated pictures must stay referable for this picture even if the DPB was emptied.
  for (auto* v : {&cur_rps_.st_curr_before, &cur_rps_.st_curr_after, &cur_rps_.lt_curr})
    for (auto& p : *v)
      if (p->generated && std::find(dpb_.pics.begin(), dpb_.pics.end(), p) == dpb_.pics.end()) dpb_.pics.push_back(p);
  while ((int)dpb_.pics.size() >= opts_.limits.max_dpb_pictures) {
    // Non-conforming stream: drop the oldest picture to keep memory bounded.
    warn("DPB overflow; dropping a picture");
    dpb_.pics.front()->needed_for_output = false;
    dpb_.pics.erase(dpb_.pics.begin());
  }

  check_queue_limit(sps);
  auto job = std::make_shared<PictureJob>();
  job->state = std::make_unique<PictureState>(*pic, params, rec_hint_ + rec_hint_ / 4,
                                              pool_ != nullptr);  // cur_ stays unset if it throws
  job->pic = pic;
  job->strict = opts_.strict;
  if (!spare_pending_.empty()) {
    job->state->pending = std::move(spare_pending_.back());
    spare_pending_.pop_back();
  }
  pic->decode_index = decode_count_++;
  cur_ = pic;
  job_ = std::move(job);
  have_cur_sh_ = false;
  first_picture_ = false;
  after_eos_ = false;
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
  // No priors: a generated picture is never output and never used as the collocated
  // picture (handle_slice), so up to 16 of them per picture cost no memory or time.
  return p;
}

void Decoder::finish_picture() {
  if (!cur_) {
    skipping_ = false;
    return;
  }
  PicturePtr pic = cur_;
  std::shared_ptr<PictureJob> job = std::move(job_);
  if (pool_) {
    job->submitted = true;
    pool_->submit(job);
    ++in_flight_;
  } else {
    derive_picture(*job);
    recycle(*job);
    rec_hint_ = pic->pr.nrec;
  }
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
  if (items_.empty() && !pool_ && job->late.empty())
    decoded.push_back(pic);
  else
    items_.push_back(Item{Item::kDecoded, {}, pic, std::move(job)});
  std::deque<PicturePtr> out;
  dpb_.output_after_store(*pic->sps, out);
  queue_output(out);
}

void Decoder::end_access_unit() {
  finish_picture();
  retire(false);
}

void Decoder::flush(bool wait) {
  finish_picture();
  if (pool_) pool_->drain();
  std::deque<PicturePtr> out;
  dpb_.flush(out);
  queue_output(out);
  retire(wait);
}

bool Decoder::bump_one() {
  std::deque<PicturePtr> out;
  const bool bumped = dpb_.bump(out);
  queue_output(out);
  retire(true);
  return bumped;
}

}  // namespace bitsr
