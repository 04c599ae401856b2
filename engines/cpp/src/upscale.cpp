#include "upscale.hpp"

#include <algorithm>
#include <vector>

#include "errors.hpp"
#include "tiling.hpp"

namespace msn {

void upscale_planes(const float* input, int32_t height, int32_t width, int32_t scale, int32_t tile,
                    int32_t overlap, const InferFn& infer, float* output) {
  require(scale >= 1, MSN_ERR_INVALID_ARGUMENT, "scale must be >= 1");
  require(height >= MSN_MIN_INPUT_SIZE && width >= MSN_MIN_INPUT_SIZE, MSN_ERR_IMAGE_TOO_SMALL,
          "input is " + std::to_string(height) + "x" + std::to_string(width) +
              " but MSN needs at least 29x29; pad the image (reflect) first");
  if (tile <= 0 || (tile >= height && tile >= width)) {
    infer(input, 1, height, width, output);
    return;
  }
  // Same clamp as the Python runtime: the overlap never reaches half a tile.
  overlap = std::min(overlap, tile / 2 - 1);
  const auto tiles = plan_tiles(height, width, tile, overlap);
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
}

}  // namespace msn
