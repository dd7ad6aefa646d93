// Bindings of the rasterizer (csrc/raster). Filled in by the rasterizer layer.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_raster(py::module_& m) { (void)m; }
