#include "tiling.hpp"

#include <algorithm>
#include <string>

#include "errors.hpp"

namespace msn {

std::vector<int32_t> axis_starts(int32_t length, int32_t tile, int32_t overlap) {
  if (tile >= length) return {0};
  const int32_t stride = tile - overlap;
  std::vector<int32_t> starts;
  for (int32_t s = 0; s < length - tile; s += stride) starts.push_back(s);
  starts.push_back(length - tile);  // the last tile is clamped to the border, never shrunk
  return starts;
}

std::vector<msn_tile> plan_tiles(int32_t height, int32_t width, int32_t tile, int32_t overlap) {
  require(tile >= MSN_MIN_INPUT_SIZE, MSN_ERR_INVALID_ARGUMENT,
          "tile " + std::to_string(tile) + " is below MSN's minimum input " + std::to_string(MSN_MIN_INPUT_SIZE));
  require(overlap >= 0 && overlap < tile / 2, MSN_ERR_INVALID_ARGUMENT,
          "overlap " + std::to_string(overlap) + " must be in [0, tile/2) for tile " + std::to_string(tile));
  require(height >= MSN_MIN_INPUT_SIZE && width >= MSN_MIN_INPUT_SIZE, MSN_ERR_IMAGE_TOO_SMALL,
          "image " + std::to_string(height) + "x" + std::to_string(width) + " is below MSN's minimum 29x29");
  const int32_t th = std::min(tile, height), tw = std::min(tile, width);
  std::vector<msn_tile> tiles;
  for (int32_t y : axis_starts(height, tile, overlap))
    for (int32_t x : axis_starts(width, tile, overlap)) tiles.push_back({y, x, th, tw});
  return tiles;
}

std::vector<float> ramp(int32_t length, int32_t ramp_len, bool rise_start, bool rise_end) {
  std::vector<float> w(static_cast<size_t>(length), 1.0f);
  for (int32_t i = 0; i < ramp_len && i < length; ++i) {
    // Same float32 arithmetic as numpy: (i + 0.5) / ramp_len, never 0.
    const float rise = (static_cast<float>(i) + 0.5f) / static_cast<float>(ramp_len);
    if (rise_start) w[i] = std::min(w[i], rise);
    if (rise_end) w[length - 1 - i] = std::min(w[length - 1 - i], rise);
  }
  return w;
}

std::vector<float> tile_weight(int32_t height, int32_t width, int32_t overlap, const msn_tile& t, int32_t scale) {
  const int32_t r = overlap * scale;
  const auto wy = ramp(t.h * scale, r, t.y > 0, t.y + t.h < height);
  const auto wx = ramp(t.w * scale, r, t.x > 0, t.x + t.w < width);
  std::vector<float> weight(wy.size() * wx.size());
  for (size_t i = 0; i < wy.size(); ++i)
    for (size_t j = 0; j < wx.size(); ++j) weight[i * wx.size() + j] = wy[i] * wx[j];
  return weight;
}

}  // namespace msn
