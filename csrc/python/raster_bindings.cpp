// Python face of the rasterizer (csrc/raster): per-4x4 prior arrays (dicts of NumPy arrays,
// as PicturePriors.arrays) in, dense NumPy arrays out. The work runs without the GIL.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "raster/flow.h"
#include "raster/hr_warp.h"
#include "raster/maps.h"

namespace py = pybind11;
using namespace bitsr::raster;

namespace {

// Output memory is recycled: a dense 1080p flow is 24 MB, and a fresh allocation costs
// as much as computing it (the kernel faults in and zeroes every page). Arrays handed to
// Python own a pooled buffer and give it back when they are freed; a later call of the
// same size takes it again. The pool holds at most kPoolBytes of idle buffers.
class BufferPool {
 public:
  void* take(size_t bytes) {
    {
      std::lock_guard<std::mutex> lock(m_);
      for (size_t i = 0; i < idle_.size(); ++i)
        if (idle_[i].bytes == bytes) {
          void* p = idle_[i].ptr;
          held_ -= bytes;
          idle_[i] = idle_.back();
          idle_.pop_back();
          return p;
        }
    }
    void* p = std::malloc(bytes ? bytes : 1);
    if (!p) throw std::bad_alloc();
    return p;
  }
  void give(void* p, size_t bytes) {
    std::lock_guard<std::mutex> lock(m_);
    while (!idle_.empty() && held_ + bytes > kPoolBytes) {  // drop the oldest
      std::free(idle_.front().ptr);
      held_ -= idle_.front().bytes;
      idle_.erase(idle_.begin());
    }
    if (bytes > kPoolBytes) {
      std::free(p);
      return;
    }
    idle_.push_back({p, bytes});
    held_ += bytes;
  }

 private:
  static constexpr size_t kPoolBytes = size_t(128) << 20;
  struct Entry {
    void* ptr;
    size_t bytes;
  };
  std::mutex m_;
  std::vector<Entry> idle_;
  size_t held_ = 0;
};

BufferPool& pool() {
  static BufferPool* p = new BufferPool();  // never destroyed: arrays may outlive module teardown
  return *p;
}

template <class T>
py::array_t<T> pooled_array(std::vector<py::ssize_t> shape) {
  size_t n = 1;
  for (auto d : shape) n *= (size_t)d;
  struct Owned {
    void* ptr;
    size_t bytes;
  };
  auto* o = new Owned{pool().take(n * sizeof(T)), n * sizeof(T)};
  py::capsule owner(o, [](void* q) {
    auto* own = static_cast<Owned*>(q);
    pool().give(own->ptr, own->bytes);
    delete own;
  });
  return py::array_t<T>(shape, static_cast<T*>(o->ptr), owner);
}

// Arrays borrowed from the caller's dicts, kept referenced while the GIL is released.
struct Borrowed {
  std::vector<py::array> keep;

  template <class T>
  const T* get(const py::dict& d, const char* name, int gh, int gw, std::initializer_list<py::ssize_t> tail) {
    PyObject* item = PyDict_GetItemString(d.ptr(), name);  // borrowed; one lookup per call
    if (!item) throw py::value_error(std::string("priors lack the array '") + name + "'");
    py::handle o(item);
    if (!py::isinstance<py::array>(o)) throw py::type_error(std::string("'") + name + "' is not a NumPy array");
    py::array a = py::reinterpret_borrow<py::array>(o);
    // identity first (the usual case); then equivalence: an unpickled array has an equal dtype object
    if (!a.dtype().is(py::dtype::of<T>()) && !py::isinstance<py::array_t<T>>(o))
      throw py::type_error(std::string("'") + name + "' has dtype " + std::string(py::str(a.dtype())) + ", expected " +
                           std::string(py::str(py::dtype::of<T>())));
    bool ok = a.ndim() == (py::ssize_t)(2 + tail.size()) && a.shape(0) == gh && a.shape(1) == gw;
    for (size_t i = 0; ok && i < tail.size(); ++i) ok = a.shape(2 + i) == tail.begin()[i];
    if (!ok) throw py::value_error(std::string("'") + name + "' does not match the 4x4 grid of pred_mode");
    if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string("'") + name + "' is not C-contiguous");
    keep.push_back(a);
    return static_cast<const T*>(a.data());
  }

  PriorsView view(const py::dict& d, int32_t poc, bool for_maps) {
    PyObject* pmo = PyDict_GetItemString(d.ptr(), "pred_mode");
    if (!pmo) throw py::value_error("priors lack the array 'pred_mode'");
    if (!py::isinstance<py::array>(pmo)) throw py::type_error("'pred_mode' is not a NumPy array");
    py::array pm = py::reinterpret_borrow<py::array>(pmo);
    if (pm.ndim() != 2) throw py::value_error("'pred_mode' must be [Gh, Gw]");
    PriorsView v;
    v.gh = (int)pm.shape(0);
    v.gw = (int)pm.shape(1);
    v.poc = poc;
    v.pred_mode = get<int8_t>(d, "pred_mode", v.gh, v.gw, {});
    if (for_maps) {
      v.cu_log2 = get<uint8_t>(d, "cu_log2", v.gh, v.gw, {});
      v.part_mode = get<uint8_t>(d, "part_mode", v.gh, v.gw, {});
      v.tu_log2 = get<uint8_t>(d, "tu_log2", v.gh, v.gw, {});
      v.qp_y = get<int8_t>(d, "qp_y", v.gh, v.gw, {});
      v.merge_flag = get<uint8_t>(d, "merge_flag", v.gh, v.gw, {});
      v.residual = get<uint8_t>(d, "residual", v.gh, v.gw, {});
      v.inter_dir = get<uint8_t>(d, "inter_dir", v.gh, v.gw, {});
    } else {
      v.inter_dir = get<uint8_t>(d, "inter_dir", v.gh, v.gw, {});
      v.mv = get<int16_t>(d, "mv", v.gh, v.gw, {2, 2});
      v.ref_poc = get<int32_t>(d, "ref_poc", v.gh, v.gw, {2});
      v.residual = get<uint8_t>(d, "residual", v.gh, v.gw, {});
    }
    return v;
  }
};

Geometry geometry(const PriorsView& v, py::tuple crop, int factor) {
  if (crop.size() != 4) throw py::value_error("crop must be (left, top, width, height)");
  Geometry g;
  g.left = crop[0].cast<int>();
  g.top = crop[1].cast<int>();
  g.width = crop[2].cast<int>();
  g.height = crop[3].cast<int>();
  g.factor = factor;
  if (factor < 1 || factor > 256) throw py::value_error("factor must be an integer in 1..256");
  if (g.left < 0 || g.top < 0 || g.width <= 0 || g.height <= 0 || g.left + g.width > 4 * v.gw ||
      g.top + g.height > 4 * v.gh)
    throw py::value_error("crop rectangle lies outside the coded picture");
  return g;
}

Interp parse_interp(const std::string& s) {
  if (s == "nearest") return Interp::Nearest;
  if (s == "bilinear") return Interp::Bilinear;
  throw py::value_error("interp must be 'nearest' or 'bilinear'");
}

void block_flow(Borrowed& b, const py::dict& target, int32_t poc, int32_t to_poc, const py::list& neighbours,
                const FlowOptions& o, PriorsView& tv, BlockFlow& bf) {
  tv = b.view(target, poc, false);
  std::vector<PriorsView> nb;
  std::vector<std::vector<int32_t>> refs;
  refs.reserve(py::len(neighbours));
  for (py::handle h : neighbours) {
    py::tuple t = h.cast<py::tuple>();
    if (t.size() != 2 && t.size() != 3)
      throw py::value_error("neighbours must be (arrays, poc) or (arrays, poc, referenced POCs) tuples");
    nb.push_back(b.view(t[0].cast<py::dict>(), t[1].cast<int32_t>(), false));
    if (t.size() == 3 && !t[2].is_none()) {
      refs.push_back(t[2].cast<std::vector<int32_t>>());
      nb.back().refs = refs.back().data();
      nb.back().num_refs = (int)refs.back().size();
    }
  }
  py::gil_scoped_release nogil;
  estimate_block_flow(tv, nb.data(), (int)nb.size(), to_poc, o, bf);
}

// A caller-supplied float32 output array of the given shape (reused between frames, so
// that no fresh pages have to be faulted in), or a new one.
py::array_t<float> output(const py::object& given, std::vector<py::ssize_t> shape, const char* what) {
  if (given.is_none()) return pooled_array<float>(shape);
  if (!py::isinstance<py::array_t<float>>(given) || !py::isinstance<py::array>(given))
    throw py::type_error(std::string("out ") + what + " must be a float32 NumPy array");
  py::array a = given.cast<py::array>();
  bool ok = a.ndim() == (py::ssize_t)shape.size() && (a.flags() & py::array::c_style) && a.writeable();
  for (size_t i = 0; ok && i < shape.size(); ++i) ok = a.shape(i) == shape[i];
  if (!ok)
    throw py::value_error(std::string("out ") + what +
                          " must be a writeable C-contiguous float32 array of the output shape");
  return given.cast<py::array_t<float>>();
}

FlowOptions flow_options(bool project, bool fill) {
  FlowOptions o;
  o.project = project;
  o.fill = fill;
  return o;
}

}  // namespace

void bind_raster(py::module_& m) {
  m.def(
      "raster_flow",
      [](const py::dict& target, int32_t poc, int32_t to_poc, const py::list& neighbours, py::tuple crop, int factor,
         const std::string& interp, bool project, bool fill, const py::object& out) {
        Borrowed b;
        PriorsView tv;
        const Interp ip = parse_interp(interp);
        thread_local BlockFlow bf;  // reused: its buffers stay allocated
        block_flow(b, target, poc, to_poc, neighbours, flow_options(project, fill), tv, bf);
        const Geometry g = geometry(tv, crop, factor);
        py::object out_flow = py::none(), out_conf = py::none();
        if (!out.is_none()) {
          py::tuple t = out.cast<py::tuple>();
          if (t.size() != 2) throw py::value_error("out must be a (flow, confidence) pair");
          out_flow = t[0];
          out_conf = t[1];
        }
        py::array_t<float> flow = output(out_flow, {2, g.out_h(), g.out_w()}, "flow");
        py::array_t<float> conf = output(out_conf, {g.out_h(), g.out_w()}, "confidence");
        float* fp = flow.mutable_data();
        float* cp = conf.mutable_data();
        {
          py::gil_scoped_release nogil;
          rasterize_flow(bf, g, ip, fp, cp);
        }
        return py::make_tuple(flow, conf);
      },
      py::arg("target"), py::arg("poc"), py::arg("to_poc"), py::arg("neighbours"), py::arg("crop"),
      py::arg("factor") = 1, py::arg("interp") = "nearest", py::arg("project") = true, py::arg("fill") = true,
      py::arg("out") = py::none(),
      "Flow from picture `poc` to picture `to_poc`: (flow float32 [2,H,W], confidence float32 [H,W]).\n"
      "target: dict of per-4x4 arrays; neighbours: list of (arrays, poc[, referenced POCs]) of the same\n"
      "coded video sequence (the referenced POCs let pictures with nothing to give be skipped unread);\n"
      "crop: (left, top, width, height) in coded luma samples; factor: output subsampling;\n"
      "out: optional (flow, confidence) arrays to write into.");
  m.def(
      "raster_block_flow",
      [](const py::dict& target, int32_t poc, int32_t to_poc, const py::list& neighbours, bool project, bool fill) {
        Borrowed b;
        PriorsView tv;
        BlockFlow bf;
        block_flow(b, target, poc, to_poc, neighbours, flow_options(project, fill), tv, bf);
        py::array_t<float> flow({(py::ssize_t)2, (py::ssize_t)bf.gh, (py::ssize_t)bf.gw});
        py::array_t<float> conf({(py::ssize_t)bf.gh, (py::ssize_t)bf.gw});
        std::copy(bf.u.begin(), bf.u.end(), flow.mutable_data());
        std::copy(bf.v.begin(), bf.v.end(), flow.mutable_data() + bf.u.size());
        std::copy(bf.conf.begin(), bf.conf.end(), conf.mutable_data());
        return py::make_tuple(flow, conf);
      },
      py::arg("target"), py::arg("poc"), py::arg("to_poc"), py::arg("neighbours"), py::arg("project") = true,
      py::arg("fill") = true, "Flow per 4x4 block of the coded picture, in luma samples, and its confidence.");
  m.def(
      "raster_maps",
      [](const py::dict& arrays, const std::vector<std::string>& names, py::tuple crop, int factor, int ctb_size) {
        std::vector<MapKind> kinds;
        for (const auto& n : names) {
          MapKind k;
          if (!map_kind_from_name(n, k)) {
            std::string all;
            for (const char* const* p = map_names(); *p; ++p) all += std::string(all.empty() ? "" : ", ") + *p;
            throw py::value_error("unknown map '" + n + "' (choose from " + all + ")");
          }
          kinds.push_back(k);
        }
        int log2_ctb = 0;
        while ((1 << log2_ctb) < ctb_size && log2_ctb < 8) ++log2_ctb;
        Borrowed b;
        PriorsView v = b.view(arrays, 0, true);
        const Geometry g = geometry(v, crop, factor);
        std::vector<py::array> outs;
        std::vector<uint8_t*> ptrs;
        for (MapKind k : kinds) {
          const std::vector<py::ssize_t> shape{g.out_h(), g.out_w()};
          py::array a =
              map_is_signed(k) ? py::array(pooled_array<int8_t>(shape)) : py::array(pooled_array<uint8_t>(shape));
          ptrs.push_back(static_cast<uint8_t*>(a.mutable_data()));
          outs.push_back(a);
        }
        {
          py::gil_scoped_release nogil;
          std::vector<uint8_t> grid(v.size());
          for (size_t i = 0; i < kinds.size(); ++i) {
            block_map(v, kinds[i], log2_ctb, grid.data());
            if (map_is_edges(kinds[i]))
              rasterize_edges(grid.data(), v.gw, v.gh, g, ptrs[i]);
            else
              rasterize_nearest(grid.data(), v.gw, v.gh, g, ptrs[i]);
          }
        }
        py::dict d;
        for (size_t i = 0; i < kinds.size(); ++i) d[py::str(names[i])] = outs[i];
        return d;
      },
      py::arg("arrays"), py::arg("names"), py::arg("crop"), py::arg("factor") = 1, py::arg("ctb_size") = 64,
      "Coding-structure maps at the output geometry: dict name -> uint8 (int8 for pred_mode, qp) [H,W].");
  m.def(
      "warp_fold",
      [](py::array_t<float, py::array::forcecast> prev,
         py::array_t<float, py::array::c_style | py::array::forcecast> flow, int scale, int threads,
         bool channels_last) {
        if (prev.ndim() != 3 || flow.ndim() != 3 || flow.shape(0) != 2)
          throw py::value_error("warp_fold: prev must be [C, H, W] and flow [2, h, w]");
        if (scale < 1 || scale > 8) throw py::value_error("warp_fold: scale must be 1 to 8");
        const int c = static_cast<int>(prev.shape(0)), h = static_cast<int>(flow.shape(1)),
                  w = static_cast<int>(flow.shape(2));
        if (c < 1 || h < 1 || w < 1 || prev.shape(1) != (py::ssize_t)h * scale ||
            prev.shape(2) != (py::ssize_t)w * scale)
          throw py::value_error("warp_fold: prev must be [C, scale * h, scale * w] for a flow [2, h, w]");
        // Any non-negative element strides are read in place (planar or channels-last images);
        // others (negative, not whole elements) are copied to C order first.
        bool ok = true;
        for (int d = 0; d < 3; ++d)
          ok = ok && prev.strides(d) >= 0 && prev.strides(d) % (py::ssize_t)sizeof(float) == 0;
        if (!ok) prev = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(prev);
        const Strides st{prev.strides(0) / (ptrdiff_t)sizeof(float), prev.strides(1) / (ptrdiff_t)sizeof(float),
                         prev.strides(2) / (ptrdiff_t)sizeof(float)};
        const py::ssize_t oc = (py::ssize_t)c * scale * scale;
        py::array_t<float> out = channels_last ? pooled_array<float>({(py::ssize_t)h, (py::ssize_t)w, oc})
                                               : pooled_array<float>({oc, (py::ssize_t)h, (py::ssize_t)w});
        const float* pp = prev.data();
        const float* fp = flow.data();
        float* op = out.mutable_data();
        const int n = std::max(1, std::min(threads, h));
        {
          py::gil_scoped_release nogil;
          std::vector<std::thread> pool;
          for (int t = 1; t < n; ++t)
            pool.emplace_back(warp_fold, pp, st, c, h, w, scale, fp, op, (int)((int64_t)h * t / n),
                              (int)((int64_t)h * (t + 1) / n), channels_last);
          warp_fold(pp, st, c, h, w, scale, fp, op, 0, (int)((int64_t)h / n), channels_last);
          for (auto& th : pool) th.join();
        }
        return out;
      },
      py::arg("prev"), py::arg("flow"), py::arg("scale"), py::arg("threads") = 1, py::arg("channels_last") = false,
      "pixel_unshuffle(grid_sample(prev, upscale_flow(flow, scale))) (bilinear, border, align_corners):\n"
      "prev float32 [C, scale*h, scale*w], flow float32 [2, h, w] in LR pixels -> float32 [C*scale^2, h, w]\n"
      "(channels_last: [h, w, C*scale^2]).");
  m.def("raster_map_names", []() {
    std::vector<std::string> v;
    for (const char* const* p = map_names(); *p; ++p) v.emplace_back(*p);
    return v;
  });
}
