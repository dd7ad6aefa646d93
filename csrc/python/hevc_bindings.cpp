// Python face of the HEVC parser: Decoder, Picture (priors as zero-copy NumPy arrays) and
// the exception types.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdio>
#include <memory>

#include "common/error.h"
#include "hevc/decoder.h"
#include "hevc/thread_park.h"

namespace py = pybind11;
using namespace bitsr;

namespace {

py::object g_bitstream_error, g_unsupported_error, g_limit_error;

template <class T>
py::array view(const std::shared_ptr<Picture>& pic, const T* data, std::vector<py::ssize_t> shape) {
  // The capsule keeps the picture (and so the buffer) alive as long as the array lives.
  auto* keep = new std::shared_ptr<Picture>(pic);
  py::capsule owner(keep, [](void* p) { delete static_cast<std::shared_ptr<Picture>*>(p); });
  py::array_t<T> a(shape, data, owner);
  // read-only: the same memory is the reference motion field of later pictures
  py::detail::array_proxy(a.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
  return std::move(a);
}

py::dict picture_arrays(const std::shared_ptr<Picture>& p) {
  {
    py::gil_scoped_release nogil;
    p->pr.materialize(p->slices);
  }
  const SchemaArrays& r = p->pr.schema;
  const py::ssize_t h = p->pr.gh, w = p->pr.gw;
  py::dict d;
  d["pred_mode"] = view(p, r.pred_mode.data(), {h, w});
  d["cu_log2"] = view(p, r.cu_log2.data(), {h, w});
  d["part_mode"] = view(p, r.part_mode.data(), {h, w});
  d["merge_flag"] = view(p, r.merge_flag.data(), {h, w});
  d["inter_dir"] = view(p, r.inter_dir.data(), {h, w});
  d["mv"] = view(p, r.mv.data(), {h, w, 2, 2});
  d["ref_idx"] = view(p, r.ref_idx.data(), {h, w, 2});
  d["ref_poc"] = view(p, r.ref_poc.data(), {h, w, 2});
  d["qp_y"] = view(p, r.qp_y.data(), {h, w});
  d["tu_log2"] = view(p, r.tu_log2.data(), {h, w});
  d["residual"] = view(p, r.residual.data(), {h, w});
  d["intra_mode"] = view(p, r.intra_mode.data(), {h, w});
  d["pcm_flag"] = view(p, r.pcm_flag.data(), {h, w});
  d["transquant_bypass"] = view(p, r.transquant_bypass.data(), {h, w});
  return d;
}

py::dict slice_dict(const SliceInfo& s) {
  py::dict d;
  d["slice_segment_address"] = s.slice_segment_address;
  d["dependent"] = s.dependent;
  d["slice_type"] = s.slice_type;
  d["slice_qp"] = s.slice_qp;
  py::list refs, lts;
  for (int l = 0; l < 2; ++l) {
    py::list r, t;
    for (int i = 0; i < s.num_ref_idx[l]; ++i) {
      r.append(s.ref_poc[l][i]);
      t.append((bool)s.ref_is_lt[l][i]);
    }
    refs.append(r);
    lts.append(t);
  }
  d["ref_poc"] = refs;
  d["ref_is_long_term"] = lts;
  d["temporal_mvp"] = s.temporal_mvp;
  d["collocated_from_l0"] = s.collocated_from_l0;
  d["collocated_ref_idx"] = s.collocated_ref_idx;
  d["max_num_merge_cand"] = s.max_num_merge_cand;
  d["deblocking_disabled"] = s.deblocking_disabled;
  d["sao_luma"] = s.sao_luma;
  d["sao_chroma"] = s.sao_chroma;
  d["nal_index"] = s.nal_index;
  if (s.has_weights) {
    py::dict w;
    const PredWeightTable& t = s.pwt;
    w["luma_log2_weight_denom"] = t.luma_log2_weight_denom;
    w["chroma_log2_weight_denom"] = t.chroma_log2_weight_denom;
    py::list lw, lo, cw, co;
    for (int l = 0; l < 2; ++l) {
      py::list a, b, c, e;
      for (int i = 0; i < s.num_ref_idx[l]; ++i) {
        a.append(t.luma_weight[l][i]);
        b.append(t.luma_offset[l][i]);
        c.append(py::make_tuple(t.chroma_weight[l][i][0], t.chroma_weight[l][i][1]));
        e.append(py::make_tuple(t.chroma_offset[l][i][0], t.chroma_offset[l][i][1]));
      }
      lw.append(a);
      lo.append(b);
      cw.append(c);
      co.append(e);
    }
    w["luma_weight"] = lw;
    w["luma_offset"] = lo;
    w["chroma_weight"] = cw;
    w["chroma_offset"] = co;
    d["weights"] = w;
  } else {
    d["weights"] = py::none();
  }
  return d;
}

void raise_py(py::object cls, const std::string& msg, int64_t nal, int64_t off, const std::string& elem) {
  py::object e = cls(msg);
  e.attr("nal_index") = nal >= 0 ? py::object(py::int_(nal)) : py::object(py::none());
  e.attr("byte_offset") = off >= 0 ? py::object(py::int_(off)) : py::object(py::none());
  e.attr("element") = elem.empty() ? py::object(py::none()) : py::object(py::str(elem));
  PyErr_SetObject(cls.ptr(), e.ptr());
}

}  // namespace

void bind_hevc(py::module_& m) {
  py::object value_error = py::reinterpret_borrow<py::object>(PyExc_ValueError);
  py::object builtins = py::module_::import("builtins");
  py::object type = builtins.attr("type");
  py::dict ns;
  ns["__module__"] = "bitsr";
  ns["__doc__"] =
      "Malformed HEVC data. Attributes: nal_index (index of the NAL unit in the stream), "
      "byte_offset (its position), element (the syntax element being read); None where unknown.";
  // class-level defaults, so errors raised from Python code carry the attributes too
  ns["nal_index"] = py::none();
  ns["byte_offset"] = py::none();
  ns["element"] = py::none();
  g_bitstream_error = type("BitstreamError", py::make_tuple(value_error), ns);
  py::dict ns2;
  ns2["__module__"] = "bitsr";
  ns2["__doc__"] = "Valid HEVC that bitsr does not implement (SCC, multi-layer, 3D).";
  g_unsupported_error = type("UnsupportedStreamError", py::make_tuple(g_bitstream_error), ns2);
  py::dict ns3;
  ns3["__module__"] = "bitsr";
  ns3["__doc__"] = "A configured resource limit (picture size, slices, NAL size, ...) was exceeded.";
  g_limit_error = type("LimitError", py::make_tuple(g_bitstream_error), ns3);
  m.attr("BitstreamError") = g_bitstream_error;
  m.attr("UnsupportedStreamError") = g_unsupported_error;
  m.attr("LimitError") = g_limit_error;

  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StreamError& e) {
      std::string msg = e.what();
      if (e.nal_index >= 0)
        msg += " (NAL " + std::to_string(e.nal_index) + ", byte " + std::to_string(e.byte_offset) + ")";
      py::object cls = g_bitstream_error;
      if (dynamic_cast<const UnsupportedError*>(&e))
        cls = g_unsupported_error;
      else if (dynamic_cast<const LimitError*>(&e))
        cls = g_limit_error;
      raise_py(cls, msg, e.nal_index, e.byte_offset, e.element);
    }
  });

  py::class_<Picture, std::shared_ptr<Picture>>(m, "Picture", "Priors of one decoded picture (decode order).")
      .def_readonly("poc", &Picture::poc)
      .def_readonly("nal_type", &Picture::nal_type)
      .def_readonly("slice_type", &Picture::slice_type)
      .def_readonly("temporal_id", &Picture::temporal_id)
      .def_readonly("decode_index", &Picture::decode_index)
      .def_readonly("cvs_index", &Picture::cvs_index)
      .def_readonly("pic_output_flag", &Picture::pic_output_flag)
      .def_readonly("num_slice_segments", &Picture::num_slice_segments)
      .def_readonly("generated", &Picture::generated)
      .def_readonly("errors", &Picture::errors)
      .def_property_readonly("num_ctb_decoded", [](const Picture& p) { return p.num_ctb_ok; })
      .def_property_readonly("ctb_decoded",
                             [](const std::shared_ptr<Picture>& p) {
                               const Sps& s = *p->sps;
                               py::array_t<uint8_t> a({s.PicHeightInCtbsY, s.PicWidthInCtbsY});
                               std::memcpy(a.mutable_data(), p->ctb_ok.data(), p->ctb_ok.size());
                               return a;
                             })
      .def_property_readonly("width", [](const Picture& p) { return p.sps->width; })
      .def_property_readonly("height", [](const Picture& p) { return p.sps->height; })
      .def_property_readonly("conf_win",
                             [](const Picture& p) {
                               return py::make_tuple(p.sps->conf_win[0], p.sps->conf_win[1], p.sps->conf_win[2],
                                                     p.sps->conf_win[3]);
                             })
      .def_property_readonly("bit_depth", [](const Picture& p) { return p.sps->bit_depth_luma; })
      .def_property_readonly("bit_depth_chroma", [](const Picture& p) { return p.sps->bit_depth_chroma; })
      .def_property_readonly("chroma_format", [](const Picture& p) { return p.sps->chroma_format_idc; })
      .def_property_readonly("ctb_size", [](const Picture& p) { return p.sps->CtbSizeY; })
      .def_property_readonly("min_cb_size", [](const Picture& p) { return p.sps->MinCbSizeY; })
      .def_property_readonly("slices",
                             [](const Picture& p) {
                               py::list l;
                               for (auto& s : p.slices) l.append(slice_dict(s));
                               return l;
                             })
      .def("arrays", &picture_arrays, "Per-4x4 priors as read-only NumPy arrays sharing the parser's memory.")
      .def("__repr__", [](const Picture& p) {
        return "<bitsr._core.Picture poc=" + std::to_string(p.poc) + " decode_index=" + std::to_string(p.decode_index) +
               " nal_type=" + std::to_string(p.nal_type) + ">";
      });

  py::class_<Decoder>(m, "Decoder", "Parse-only HEVC decoder fed with NAL units in decoding order.")
      .def(py::init([](bool strict, bool parse_ctu, int64_t max_luma_samples, int max_dimension, int max_slice_segments,
                       int max_dpb_pictures, int64_t max_nal_size, int max_entry_points, int64_t max_queued_bytes,
                       int threads, int max_in_flight, int64_t wpp_min_bytes, int64_t wpp_inter_min_bytes,
                       bool background) {
             // Ceilings keep every derived size inside the parser's integer types (16-bit
             // block coordinates of PU records, int CTB counts).
             if (max_dimension > 65535 || max_luma_samples > (int64_t(1) << 32))
               throw py::value_error("max_dimension must be <= 65535 and max_luma_samples <= 2**32");
             if (threads < 0 || threads > 256) throw py::value_error("threads must be in [0, 256]");
             if (max_in_flight < 0) throw py::value_error("max_in_flight must be >= 0");
             DecoderOptions o;
             o.strict = strict;
             o.threads = threads;
             o.max_in_flight = max_in_flight;
             o.wpp_min_bytes = wpp_min_bytes;
             o.wpp_inter_min_bytes = wpp_inter_min_bytes;
             o.background = background;
             o.parse_ctu = parse_ctu;
             if (max_luma_samples > 0) o.limits.max_luma_samples = max_luma_samples;
             if (max_dimension > 0) o.limits.max_dimension = max_dimension;
             if (max_slice_segments > 0) o.limits.max_slice_segments_per_picture = max_slice_segments;
             if (max_dpb_pictures > 0) o.limits.max_dpb_pictures = max_dpb_pictures;
             if (max_nal_size > 0) o.limits.max_nal_size = max_nal_size;
             if (max_entry_points > 0) o.limits.max_entry_points = max_entry_points;
             if (max_queued_bytes > 0) o.limits.max_queued_bytes = max_queued_bytes;
             return new Decoder(o);
           }),
           py::arg("strict") = false, py::arg("parse_ctu") = true, py::arg("max_luma_samples") = 0,
           py::arg("max_dimension") = 0, py::arg("max_slice_segments") = 0, py::arg("max_dpb_pictures") = 0,
           py::arg("max_nal_size") = 0, py::arg("max_entry_points") = 0, py::arg("max_queued_bytes") = 0,
           py::arg("threads") = 0, py::arg("max_in_flight") = 0, py::arg("wpp_min_bytes") = 4096,
           py::arg("wpp_inter_min_bytes") = -1, py::arg("background") = false,
           "Limits (0 = default, see csrc/hevc/limits.h and README 'Hostile input') raise LimitError when exceeded. "
           "threads: worker threads parsing slice data in the background (0: in the calling thread); "
           "max_in_flight: pictures handed to them and not yet popped from the decoding-order queue "
           "(0: 3 * threads + 4); wpp_min_bytes: with 2+ threads, WPP segments of I slices this large have their CTB "
           "rows parsed by several threads (-1: never); wpp_inter_min_bytes: the same for P and B slices (-1, the "
           "default: never); background: the workers run at the lowest scheduling priority "
           "(SCHED_IDLE), beside another decoder. Pictures, arrays and warnings are the same whatever the threads.")
      .def_property_readonly_static("default_limits",
                                    [](py::object) {
                                      const Limits l;
                                      py::dict d;
                                      d["max_luma_samples"] = l.max_luma_samples;
                                      d["max_dimension"] = l.max_dimension;
                                      d["max_slice_segments"] = l.max_slice_segments_per_picture;
                                      d["max_dpb_pictures"] = l.max_dpb_pictures;
                                      d["max_nal_size"] = l.max_nal_size;
                                      d["max_entry_points"] = l.max_entry_points;
                                      d["max_queued_bytes"] = l.max_queued_bytes;
                                      return d;
                                    })
      .def(
          "push_annexb",
          [](Decoder& d, py::buffer b, bool final, size_t yield_pictures) {
            py::buffer_info i = b.request();
            py::gil_scoped_release nogil;
            return d.push_annexb_chunk(static_cast<const uint8_t*>(i.ptr), (size_t)i.size * i.itemsize, final,
                                       yield_pictures);
          },
          py::arg("data"), py::arg("final") = false, py::arg("yield_pictures") = 0,
          "Feed part of an Annex B byte stream; NAL units are parsed once complete. With yield_pictures=N > 0 "
          "it stops once N finished pictures wait and returns True: pop them and call again with b'' (same "
          "final) until it returns False.")
      .def(
          "push_nal",
          [](Decoder& d, py::buffer b, int64_t offset) {
            py::buffer_info i = b.request();
            py::gil_scoped_release nogil;
            d.push_nal(static_cast<const uint8_t*>(i.ptr), (size_t)i.size * i.itemsize, offset);
          },
          py::arg("data"), py::arg("offset") = -1)
      .def(
          "push_packet",
          [](Decoder& d, py::buffer b, int length_size, int64_t offset) {
            py::buffer_info i = b.request();
            py::gil_scoped_release nogil;
            const uint8_t* p = static_cast<const uint8_t*>(i.ptr);
            const size_t n = (size_t)i.size * i.itemsize;
            if (length_size == 0)
              d.push_annexb(p, n, offset);
            else
              d.push_length_prefixed(p, n, length_size, offset);
            d.end_access_unit();
          },
          py::arg("data"), py::arg("length_size") = 0, py::arg("offset") = 0,
          "Feed one access unit (a container packet): Annex B if length_size is 0, else length-prefixed.")
      .def(
          "push_hvcc",
          [](Decoder& d, py::buffer b) {
            py::buffer_info i = b.request();
            return d.push_hvcc(static_cast<const uint8_t*>(i.ptr), (size_t)i.size * i.itemsize);
          },
          "Feed an hvcC record (MP4/MKV extradata); returns the NAL length size.")
      .def("end_access_unit",
           [](Decoder& d) {
             py::gil_scoped_release nogil;
             d.end_access_unit();
           })
      .def(
          "flush",
          [](Decoder& d, bool wait) {
            py::gil_scoped_release nogil;
            d.flush(wait);
          },
          py::arg("wait") = true,
          "End of input: finishes the current picture and outputs every picture left; with "
          "wait=False, as far as the worker threads have parsed (sync() or flush() give the rest).")
      .def(
          "bump_one",
          [](Decoder& d) {
            py::gil_scoped_release nogil;
            return d.bump_one();
          },
          "Move the next picture in output order to the output queue now.")
      .def(
          "sync",
          [](Decoder& d) {
            py::gil_scoped_release nogil;
            d.sync();
          },
          "Wait for the worker threads: every finished picture is then in the decoding-order queue.")
      .def(
          "pop_decoded",
          [](Decoder& d) {
            std::vector<std::shared_ptr<Picture>> v(d.decoded.begin(), d.decoded.end());
            d.decoded.clear();
            return v;
          },
          "Finished pictures in decoding order since the last call.")
      .def(
          "pop_output",
          [](Decoder& d) {
            std::vector<std::shared_ptr<Picture>> v(d.output.begin(), d.output.end());
            d.output.clear();
            return v;
          },
          "Pictures in output order since the last call.")
      .def_property_readonly("num_pending_output", [](const Decoder& d) { return d.output.size(); })
      .def_property_readonly("num_nals", &Decoder::num_nals)
      .def_property_readonly("num_pictures_started", &Decoder::num_pictures_started)
      .def_property_readonly("threads", &Decoder::num_threads)
      .def_property_readonly("max_in_flight", &Decoder::max_in_flight)
      .def_property_readonly("num_row_segments", &Decoder::num_row_segments,
                             "Slice segments whose CTB rows were parsed by several threads (WPP).")
      .def_property_readonly("num_skipped_pictures", &Decoder::num_skipped_pictures)
      .def_property_readonly("warnings", &Decoder::warnings);
  m.def("parked_threads", &parked_threads,
        "Parser worker threads alive in this process (running or idle): they outlive decoders and are reused.");
}
