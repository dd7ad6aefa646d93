// bitsr._core: one extension, bindings only. Each layer binds itself.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_hevc(py::module_& m);
void bind_raster(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "bitsr native core: HEVC bitstream parser and prior rasterizer";
  bind_hevc(m);
  bind_raster(m);
}
