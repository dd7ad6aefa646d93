#include "hevc/picture.h"

#include "common/error.h"
#include "hevc/fill.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace bitsr {

namespace {

// Recently freed prior buffers, reused by size. Bounded so a burst of differently sized
// streams cannot pin memory. Each remembers the thread that last wrote it: a thread gets its
// own buffers back first, whose cache lines are still in its core's cache (another core's
// modified lines cost a transfer each: on a 1080p grid, as much as parsing a small picture).
struct Pool {
  struct Free {
    size_t bytes;
    void* p;
    std::thread::id owner;
  };
  std::mutex mu;
  std::vector<Free> free_list;
  size_t held = 0;
  static constexpr size_t kMaxBuffers = 64;
  static constexpr size_t kMaxBytes = size_t(96) << 20;

  // A free buffer of `bytes`, this thread's if any; nullptr when there is none (`own_only`:
  // none of this thread's).
  void* take(size_t bytes, bool own_only) {
    const std::thread::id me = std::this_thread::get_id();
    std::lock_guard<std::mutex> g(mu);
    size_t pick = free_list.size();
    for (size_t i = free_list.size(); i-- > 0;) {
      if (free_list[i].bytes != bytes) continue;
      if (free_list[i].owner == me) {
        pick = i;
        break;
      }
      if (!own_only && pick == free_list.size()) pick = i;
    }
    if (pick == free_list.size()) return nullptr;
    void* p = free_list[pick].p;
    free_list.erase(free_list.begin() + (ptrdiff_t)pick);
    held -= bytes;
    return p;
  }
  void* get(size_t bytes) {
    if (void* p = take(bytes, false)) return p;
    // Cache-line aligned: records (32 bytes) and grid rows then never straddle two lines.
    void* p = std::aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void put(void* p, size_t bytes, std::thread::id owner) {
    std::lock_guard<std::mutex> g(mu);
    while (!free_list.empty() && (free_list.size() >= kMaxBuffers || held + bytes > kMaxBytes)) {
      held -= free_list.front().bytes;
      std::free(free_list.front().p);
      free_list.erase(free_list.begin());
    }
    if (bytes > kMaxBytes) {
      std::free(p);
      return;
    }
    free_list.push_back(Free{bytes, p, owner});
    held += bytes;
  }
};

Pool& pool() {
  static Pool* p = new Pool();  // never destroyed: pictures may outlive static destruction
  return *p;
}

}  // namespace

void* PriorStorage::allocate(size_t bytes) {
  release();
  p_ = pool().get(bytes);
  bytes_ = bytes;
  owner_ = std::this_thread::get_id();
  poison();
  return p_;
}

void PriorStorage::poison() {
  // BITSR_POISON=1 fills new buffers with a pattern so reads of unwritten priors show up
  static const bool on = std::getenv("BITSR_POISON") != nullptr;
  if (on) std::memset(p_, 0xA5, bytes_);
}

namespace {
// Lays out arrays of given element sizes and counts in one buffer, 64-byte aligned.
struct Layout {
  size_t off = 0;
  template <class T>
  size_t place(size_t count) {
    off = (off + 63) & ~(size_t)63;
    size_t at = off;
    off += count * sizeof(T);
    return at;
  }
};
template <class T>
void bind(Arr<T>& a, char* base, size_t at, size_t count) {
  a.p = reinterpret_cast<T*>(base + at);
  a.n = count;
}
}  // namespace

// Binds the grids to `storage`, allocated first when `allocate`.
void Priors::bind_grids(bool allocate) {
  const size_t n = (size_t)gw * gh;
  Layout l;
  const size_t o_pu = l.place<uint32_t>(n), o_tu = l.place<uint8_t>(n);
  char* base = static_cast<char*>(allocate ? storage.allocate(l.off) : storage.data());
  bind(pu, base, o_pu, n);
  bind(tu, base, o_tu, n);
}

void Priors::allocate(int w4, int h4, size_t rec_hint) {
  gw = w4;
  gh = h4;
  bind_grids(true);
  cap = std::max<size_t>(rec_hint, 256);
  recs = static_cast<PuRec*>(rec_storage.allocate(cap * sizeof(PuRec)));
  nrec = 0;
  schema.ready = false;
}

// Moves the records into a buffer for `ncap` of them; the old buffer goes back to the pool.
void Priors::reallocate(size_t ncap) {
  PriorStorage other;
  PuRec* r = static_cast<PuRec*>(other.allocate(ncap * sizeof(PuRec)));
  std::memcpy(r, recs, nrec * sizeof(PuRec));
  std::swap(rec_storage, other);
  recs = r;
  cap = ncap;
}

void Priors::grow() { reallocate(cap * 2); }

void Priors::claim() {
  if (nrec) return;  // written already: keep it
  if (storage.claim()) bind_grids(false);
  if (rec_storage.claim()) recs = static_cast<PuRec*>(rec_storage.data());
}

void Priors::reserve(size_t n) {
  if (n > cap) reallocate(n);
}

void Priors::shrink() {
  const size_t want = std::max<size_t>(nrec + nrec / 2, 256);
  if (cap > 2 * want) reallocate(want);
}

void Priors::unwritten_block() { throw BitstreamError("block_grid", "read of a block that no coding unit covered"); }

void SchemaArrays::allocate(size_t n) {
  Layout l;
  const size_t o_mv = l.place<int16_t>(n * 4), o_rp = l.place<int32_t>(n * 2), o_ri = l.place<int8_t>(n * 2);
  const size_t o_pm = l.place<int8_t>(n), o_cu = l.place<uint8_t>(n), o_pa = l.place<uint8_t>(n);
  const size_t o_mf = l.place<uint8_t>(n), o_id = l.place<uint8_t>(n), o_qp = l.place<int8_t>(n);
  const size_t o_tu = l.place<uint8_t>(n), o_re = l.place<uint8_t>(n), o_im = l.place<uint8_t>(n);
  const size_t o_pc = l.place<uint8_t>(n), o_tq = l.place<uint8_t>(n);
  char* base = static_cast<char*>(storage.allocate(l.off));
  bind(mv, base, o_mv, n * 4);
  bind(ref_poc, base, o_rp, n * 2);
  bind(ref_idx, base, o_ri, n * 2);
  bind(pred_mode, base, o_pm, n);
  bind(cu_log2, base, o_cu, n);
  bind(part_mode, base, o_pa, n);
  bind(merge_flag, base, o_mf, n);
  bind(inter_dir, base, o_id, n);
  bind(qp_y, base, o_qp, n);
  bind(tu_log2, base, o_tu, n);
  bind(residual, base, o_re, n);
  bind(intra_mode, base, o_im, n);
  bind(pcm_flag, base, o_pc, n);
  bind(transquant_bypass, base, o_tq, n);
}

void Priors::materialize(const std::vector<SliceInfo>& slices) {
  if (schema.ready) return;
  SchemaArrays& s = schema;
  s.allocate((size_t)gw * gh);
  const size_t G = gw;
  for (size_t i = 0; i < nrec; ++i) {
    const PuRec& r = recs[i];
    const size_t k = (size_t)r.y4 * G + r.x4;
    const int w = r.w4, h = r.h4;
    fill_rect<int8_t>(s.pred_mode.data(), k, G, w, h, r.pred_mode);
    fill_rect<uint8_t>(s.cu_log2.data(), k, G, w, h, r.cu_log2);
    fill_rect<uint8_t>(s.part_mode.data(), k, G, w, h, r.part_mode);
    fill_rect<uint8_t>(s.merge_flag.data(), k, G, w, h, r.merge_flag);
    fill_rect<uint8_t>(s.inter_dir.data(), k, G, w, h, r.inter_dir);
    fill_blocks<8>(reinterpret_cast<uint8_t*>(s.mv.data() + k * 4), G * 8, w, h, r.mv);
    fill_blocks<2>(reinterpret_cast<uint8_t*>(s.ref_idx.data() + k * 2), G * 2, w, h, r.ref_idx);
    int32_t rp[2] = {kNoRefPoc, kNoRefPoc};
    for (int l = 0; l < 2; ++l)
      if (((r.inter_dir >> l) & 1) && r.slice_idx < slices.size()) rp[l] = slices[r.slice_idx].ref_poc[l][r.ref_idx[l]];
    fill_blocks<8>(reinterpret_cast<uint8_t*>(s.ref_poc.data() + k * 2), G * 8, w, h, rp);
    fill_rect<int8_t>(s.qp_y.data(), k, G, w, h, r.qp_y);
    if (r.has_tt) {
      for (int j = 0; j < h; ++j) std::memcpy(s.tu_log2.data() + k + j * G, tu.data() + k + j * G, w);
    } else {
      fill_rect<uint8_t>(s.tu_log2.data(), k, G, w, h, r.cu_log2);
    }
    fill_rect<uint8_t>(s.residual.data(), k, G, w, h, r.residual);
    fill_rect<uint8_t>(s.intra_mode.data(), k, G, w, h, r.intra_mode);
    fill_rect<uint8_t>(s.pcm_flag.data(), k, G, w, h, r.pcm_flag);
    fill_rect<uint8_t>(s.transquant_bypass.data(), k, G, w, h, r.transquant_bypass);
  }
  s.ready = true;
}

void PriorStorage::release() {
  if (p_) pool().put(p_, bytes_, owner_);
  p_ = nullptr;
  bytes_ = 0;
}

bool PriorStorage::claim() {
  const std::thread::id me = std::this_thread::get_id();
  if (!p_ || owner_ == me) return false;
  void* q = pool().take(bytes_, true);
  if (q) {
    pool().put(p_, bytes_, owner_);  // unwritten here: it goes back under the owner it had
    p_ = q;
    poison();
  }
  owner_ = me;
  return q != nullptr;
}

}  // namespace bitsr
