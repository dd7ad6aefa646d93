#include "raster/hr_warp.h"

#include <algorithm>
#include <cmath>

namespace bitsr::raster {

namespace {

constexpr int kMaxScale = 8;

// Tap positions and weights of the s phases along one axis for a displaced origin `base`
// (= s * X + s * flow): phase j samples base + j, clamped to [0, n - 1].
struct Axis {
  int lo[kMaxScale], hi[kMaxScale];
  float a[kMaxScale];
  bool fast;  // no clamping: lo[j] = first + j, hi[j] = lo[j] + 1, one weight a[0] for all
  int first;
};

inline void axis(float base, int s, int n, Axis& ax) {
  const float fl = std::floor(base);
  ax.fast = fl >= 0.f && fl + static_cast<float>(s) <= static_cast<float>(n - 1);  // false for NaN
  if (ax.fast) {
    ax.first = static_cast<int>(fl);
    for (int j = 0; j < s; ++j) ax.lo[j] = ax.first + j, ax.hi[j] = ax.first + j + 1, ax.a[j] = base - fl;
    return;
  }
  const float lim = static_cast<float>(n - 1);
  for (int j = 0; j < s; ++j) {
    float p = base + static_cast<float>(j);
    p = !(p >= 0.f) ? 0.f : (p > lim ? lim : p);  // NaN -> 0: never an out-of-range index
    const float f = std::floor(p);
    const int i0 = static_cast<int>(f);
    ax.lo[j] = i0;
    ax.hi[j] = std::min(i0 + 1, n - 1);
    ax.a[j] = p - f;
  }
}

}  // namespace

void warp_fold(const float* prev, Strides st, int channels, int h, int w, int s, const float* flow, float* out,
               int row0, int row1, bool channels_last) {
  if (s < 1 || s > kMaxScale) return;
  const int H = h * s, W = w * s;
  const size_t plane = static_cast<size_t>(h) * w;
  const float* fx = flow;
  const float* fy = flow + plane;
  const float fs = static_cast<float>(s);
  // element strides of the output: between phases (channels) and between LR pixels
  const size_t ph = channels_last ? 1 : plane;
  const size_t px = channels_last ? static_cast<size_t>(channels) * s * s : 1;
  Axis ax{}, ay{};
  float rows[kMaxScale][kMaxScale + 1];  // horizontal lerps of the s + 1 rows (fast path)
  for (int Y = row0; Y < row1; ++Y) {
    for (int X = 0; X < w; ++X) {
      const size_t k = static_cast<size_t>(Y) * w + X;
      // As upscale_flow + grid_sample: the HR offset is the LR vector times s.
      axis(static_cast<float>(s * X) + fx[k] * fs, s, W, ax);
      axis(static_cast<float>(s * Y) + fy[k] * fs, s, H, ay);
      for (int c = 0; c < channels; ++c) {
        const float* img = prev + c * st.c;
        float* o = out + static_cast<size_t>(c) * s * s * ph + k * px;
        if (ax.fast && ay.fast) {
          const float a = ax.a[0], b = ay.a[0];
          for (int r = 0; r <= s; ++r) {
            const float* row = img + (ay.first + r) * st.y + ax.first * st.x;
            for (int j = 0; j < s; ++j) {
              const float p0 = row[j * st.x], p1 = row[(j + 1) * st.x];
              rows[j][r] = p0 + a * (p1 - p0);
            }
          }
          for (int i = 0; i < s; ++i)
            for (int j = 0; j < s; ++j) o[(i * s + j) * ph] = rows[j][i] + b * (rows[j][i + 1] - rows[j][i]);
          continue;
        }
        for (int i = 0; i < s; ++i) {  // near the border: each phase clamped on its own
          const float* r0 = img + ay.lo[i] * st.y;
          const float* r1 = img + ay.hi[i] * st.y;
          for (int j = 0; j < s; ++j) {
            const ptrdiff_t x0 = ax.lo[j] * st.x, x1 = ax.hi[j] * st.x;
            const float a = ax.a[j];
            const float t = r0[x0] + a * (r0[x1] - r0[x0]);
            const float u = r1[x0] + a * (r1[x1] - r1[x0]);
            o[(i * s + j) * ph] = t + ay.a[i] * (u - t);
          }
        }
      }
    }
  }
}

}  // namespace bitsr::raster
