#include "upscale.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "errors.hpp"
#include "tiling.hpp"

namespace msn {
namespace {

// NaN or Inf (e.g. from an overflowing FP16 engine) would quantise to black pixels: refuse instead.
void require_finite(const float* values, int64_t count) {
  const bool finite = std::all_of(values, values + count, [](float v) { return std::isfinite(v); });
  require(finite, MSN_ERR_RUNTIME, "the backend produced NaN or Inf; no output was written (check the weights, "
                                   "or use an FP32 artifact)");
}

}  // namespace

void upscale_planes(const float* input, int32_t height, int32_t width, int32_t scale, int32_t tile,
                    int32_t overlap, const InferFn& infer, float* output) {
  require(scale >= 1, MSN_ERR_INVALID_ARGUMENT, "scale must be >= 1");
  require(height >= MSN_MIN_INPUT_SIZE && width >= MSN_MIN_INPUT_SIZE, MSN_ERR_IMAGE_TOO_SMALL,
          "input is " + std::to_string(height) + "x" + std::to_string(width) +
              " but MSN needs at least 29x29; pad the image (reflect) first");
  require(tile >= 0, MSN_ERR_INVALID_ARGUMENT, "tile must be 0 (whole image) or at least 29, got " + std::to_string(tile));
  const int64_t out_count = int64_t{3} * height * width * scale * scale;
  if (tile == 0 || (tile >= height && tile >= width)) {
    infer(input, 1, height, width, output);
    require_finite(output, out_count);
    return;
  }
  const auto tiles = plan_tiles(height, width, tile, overlap);  // checks tile >= 29 and overlap < tile/2
  const int64_t out_h = int64_t{height} * scale, out_w = int64_t{width} * scale;
  const int64_t out_plane = out_h * out_w;
  std::vector<float> acc(static_cast<size_t>(3 * out_plane), 0.0f);
  std::vector<float> weight_sum(static_cast<size_t>(out_plane), 0.0f);
  for (const msn_tile& t : tiles) {
    std::vector<float> patch(static_cast<size_t>(3) * t.h * t.w);
    for (int32_t c = 0; c < 3; ++c)
      for (int32_t y = 0; y < t.h; ++y) {
        const float* src = input + (int64_t{c} * height + t.y + y) * width + t.x;
        std::copy(src, src + t.w, patch.begin() + (int64_t{c} * t.h + y) * t.w);
      }
    const int32_t sh = t.h * scale, sw = t.w * scale;
    std::vector<float> sr(static_cast<size_t>(3) * sh * sw);
    infer(patch.data(), 1, t.h, t.w, sr.data());
    const auto w = tile_weight(height, width, overlap, t, scale);
    for (int32_t c = 0; c < 3; ++c)
      for (int32_t y = 0; y < sh; ++y) {
        float* dst = acc.data() + c * out_plane + (int64_t{t.y} * scale + y) * out_w + int64_t{t.x} * scale;
        const float* s = sr.data() + (int64_t{c} * sh + y) * sw;
        const float* wr = w.data() + int64_t{y} * sw;
        for (int32_t x = 0; x < sw; ++x) dst[x] += s[x] * wr[x];
      }
    for (int32_t y = 0; y < sh; ++y) {
      float* dst = weight_sum.data() + (int64_t{t.y} * scale + y) * out_w + int64_t{t.x} * scale;
      const float* wr = w.data() + int64_t{y} * sw;
      for (int32_t x = 0; x < sw; ++x) dst[x] += wr[x];
    }
  }
  for (int32_t c = 0; c < 3; ++c)
    for (int64_t i = 0; i < out_plane; ++i) output[c * out_plane + i] = acc[c * out_plane + i] / weight_sum[i];
  require_finite(output, out_count);
}

}  // namespace msn
