#include "hevc/dpb.h"

#include <algorithm>

#include "common/error.h"

namespace bitsr {

namespace {
// Reference POCs stay inside (-2^30, 2^30) like picture POCs (decoder.cpp), so that the
// POC differences of MV scaling and TMVP cannot overflow.
int32_t checked_ref_poc(int64_t poc, const char* element) {
  if (poc <= -(int64_t(1) << 30) || poc >= (int64_t(1) << 30))
    fail(element, std::string("reference picture POC ") + std::to_string(poc) + " out of range");
  return (int32_t)poc;
}
}  // namespace

RefPicSet Dpb::apply_rps(const SliceHeader& sh, const Sps& sps, const Picture& cur, bool irap_no_rasl) {
  RefPicSet rps;
  if (is_irap(cur.nal_type) && irap_no_rasl)
    for (auto& p : pics) p->is_reference = false;
  if (is_idr(cur.nal_type)) {
    for (auto& p : pics) p->is_reference = false;
    return rps;
  }
  const int max_lsb = 1 << sps.log2_max_poc_lsb;
  const ShortTermRps& st = sh.st_rps_slice;
  std::vector<Picture*> keep;
  // Long-term first: candidates are any reference picture (8.3.2, eq. 8-5).
  const int nlt = sh.num_long_term_sps + sh.num_long_term_pics;
  std::vector<Picture*> lt_pics;
  for (int i = 0; i < nlt; ++i) {
    int64_t poc_lt = sh.poc_lsb_lt[i];
    bool msb = sh.delta_poc_msb_present_flag[i];
    if (msb)
      poc_lt = checked_ref_poc(
          poc_lt + (int64_t)cur.poc - (int64_t)sh.delta_poc_msb_cycle_lt[i] * max_lsb - (cur.poc & (max_lsb - 1)),
          "delta_poc_msb_cycle_lt");
    Picture* found = nullptr;
    for (auto& p : pics) {
      if (!p->is_reference) continue;
      int64_t v = msb ? (int64_t)p->poc : (int64_t)(p->poc & (max_lsb - 1));
      if (v == poc_lt) {
        found = p.get();
        break;
      }
    }
    if (sh.used_by_curr_pic_lt[i]) {
      rps.poc_lt_curr.push_back((int32_t)poc_lt);
      rps.lt_curr_msb.push_back(msb);
      PicturePtr fp;
      for (auto& p : pics)
        if (p.get() == found) fp = p;
      rps.lt_curr.push_back(fp);
    }
    if (found) lt_pics.push_back(found);
  }
  auto find_st = [&](int32_t poc) -> PicturePtr {
    for (auto& p : pics)
      if (p->is_reference && !p->is_long_term && p->poc == poc &&
          std::find(lt_pics.begin(), lt_pics.end(), p.get()) == lt_pics.end())
        return p;
    return nullptr;
  };
  for (int i = 0; i < st.num_negative; ++i) {
    int32_t poc = checked_ref_poc((int64_t)cur.poc + st.delta_poc_s0[i], "delta_poc_s0_minus1");
    PicturePtr p = find_st(poc);
    if (p) keep.push_back(p.get());
    if (st.used_s0[i]) {
      rps.poc_st_curr_before.push_back(poc);
      rps.st_curr_before.push_back(p);
    }
  }
  for (int i = 0; i < st.num_positive; ++i) {
    int32_t poc = checked_ref_poc((int64_t)cur.poc + st.delta_poc_s1[i], "delta_poc_s1_minus1");
    PicturePtr p = find_st(poc);
    if (p) keep.push_back(p.get());
    if (st.used_s1[i]) {
      rps.poc_st_curr_after.push_back(poc);
      rps.st_curr_after.push_back(p);
    }
  }
  // Marking: long-term ones become long-term; everything outside the RPS is unused.
  for (auto& p : pics) {
    Picture* q = p.get();
    if (std::find(lt_pics.begin(), lt_pics.end(), q) != lt_pics.end()) {
      q->is_long_term = true;
      q->is_reference = true;
    } else if (std::find(keep.begin(), keep.end(), q) == keep.end()) {
      q->is_reference = false;
    }
  }
  return rps;
}

void Dpb::build_lists(const SliceHeader& sh, const RefPicSet& rps, RefList lists[2]) {
  for (int l = 0; l < 2; ++l) lists[l] = RefList();
  if (sh.slice_type == SLICE_I) return;
  struct Entry {
    Picture* pic;
    int32_t poc;
    bool lt;
  };
  const int total = sh.NumPicTotalCurr;
  for (int l = 0; l < (sh.slice_type == SLICE_B ? 2 : 1); ++l) {
    std::vector<Entry> temp;
    const int n_active = sh.num_ref_idx_active[l];
    const int n_temp = std::max(n_active, total);
    const auto& first = l == 0 ? rps.st_curr_before : rps.st_curr_after;
    const auto& first_poc = l == 0 ? rps.poc_st_curr_before : rps.poc_st_curr_after;
    const auto& second = l == 0 ? rps.st_curr_after : rps.st_curr_before;
    const auto& second_poc = l == 0 ? rps.poc_st_curr_after : rps.poc_st_curr_before;
    while ((int)temp.size() < n_temp) {
      for (size_t i = 0; i < first.size() && (int)temp.size() < n_temp; ++i)
        temp.push_back({first[i].get(), first_poc[i], false});
      for (size_t i = 0; i < second.size() && (int)temp.size() < n_temp; ++i)
        temp.push_back({second[i].get(), second_poc[i], false});
      for (size_t i = 0; i < rps.lt_curr.size() && (int)temp.size() < n_temp; ++i)
        temp.push_back({rps.lt_curr[i].get(), rps.lt_curr[i] ? rps.lt_curr[i]->poc : rps.poc_lt_curr[i], true});
    }
    RefList& L = lists[l];
    L.n = n_active;
    for (int i = 0; i < n_active; ++i) {
      const Entry& e = temp[sh.ref_pic_list_modification_flag[l] ? sh.list_entry[l][i] : i];
      L.pic[i] = e.pic;
      L.poc[i] = e.poc;
      L.is_lt[i] = e.lt;
    }
  }
}

void Dpb::remove_unused() {
  pics.erase(std::remove_if(pics.begin(), pics.end(),
                            [](const PicturePtr& p) { return !p->needed_for_output && !p->is_reference; }),
             pics.end());
}

int Dpb::num_waiting() const {
  int n = 0;
  for (auto& p : pics) n += p->needed_for_output;
  return n;
}

bool Dpb::bump(std::deque<PicturePtr>& out) {
  PicturePtr best;
  for (auto& p : pics)
    if (p->needed_for_output && (!best || p->poc < best->poc)) best = p;
  if (!best) return false;
  best->needed_for_output = false;
  out.push_back(best);
  remove_unused();
  return true;
}

void Dpb::flush(std::deque<PicturePtr>& out) {
  while (bump(out)) {
  }
  remove_unused();
}

void Dpb::output_before_decode(const Sps& sps, bool irap_no_rasl, bool first_picture, bool no_output_of_prior_pics,
                               std::deque<PicturePtr>& out) {
  if (irap_no_rasl && !first_picture) {
    if (no_output_of_prior_pics) {
      pics.clear();
    } else {
      flush(out);
      pics.clear();
    }
    return;
  }
  remove_unused();
  const int htid = sps.max_sub_layers - 1;
  for (;;) {
    int waiting = num_waiting();
    bool latency = false;
    if (sps.max_latency_increase_plus1[htid]) {
      int max_latency = sps.max_num_reorder[htid] + sps.max_latency_increase_plus1[htid] - 1;
      for (auto& p : pics)
        if (p->needed_for_output && p->latency_count >= max_latency) latency = true;
    }
    if (waiting > sps.max_num_reorder[htid] || latency || (int)pics.size() >= sps.max_dec_pic_buffering[htid]) {
      if (!bump(out)) break;
    } else {
      break;
    }
  }
}

void Dpb::output_after_store(const Sps& sps, std::deque<PicturePtr>& out) {
  const int htid = sps.max_sub_layers - 1;
  for (;;) {
    int waiting = num_waiting();
    bool latency = false;
    if (sps.max_latency_increase_plus1[htid]) {
      int max_latency = sps.max_num_reorder[htid] + sps.max_latency_increase_plus1[htid] - 1;
      for (auto& p : pics)
        if (p->needed_for_output && p->latency_count >= max_latency) latency = true;
    }
    if (waiting > sps.max_num_reorder[htid] || latency) {
      if (!bump(out)) break;
    } else {
      break;
    }
  }
}

}  // namespace bitsr
