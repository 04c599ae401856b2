// Interleaved u8/u16 images <-> planar float32/float16 RGB.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "errors.hpp"
#include "half.hpp"
#include "image.hpp"

namespace msn {
namespace {

int64_t row_stride(const msn_image& img) {
  const int64_t packed = int64_t{img.width} * img.channels * (img.type == MSN_PIXEL_U16 ? 2 : 1);
  return img.stride_bytes ? img.stride_bytes : packed;
}

float max_value(msn_pixel_type type) { return type == MSN_PIXEL_U16 ? 65535.0f : 255.0f; }

template <class Pixel>
Pixel pixel_at(const msn_image& img, int32_t y, int32_t x, int32_t c) {
  Pixel value;
  const auto* row = static_cast<const unsigned char*>(img.data) + y * row_stride(img);
  std::memcpy(&value, row + (int64_t{x} * img.channels + c) * sizeof(Pixel), sizeof(Pixel));
  return value;
}

template <class Pixel>
void set_pixel(msn_image& img, int32_t y, int32_t x, int32_t c, Pixel value) {
  auto* row = static_cast<unsigned char*>(img.data) + y * row_stride(img);
  std::memcpy(row + (int64_t{x} * img.channels + c) * sizeof(Pixel), &value, sizeof(Pixel));
}

void store(void* planes, msn_plane_type type, int64_t index, float value) {
  if (type == MSN_PLANE_F16)
    static_cast<uint16_t*>(planes)[index] = float_to_half(value);
  else
    static_cast<float*>(planes)[index] = value;
}

float load(const void* planes, msn_plane_type type, int64_t index) {
  return type == MSN_PLANE_F16 ? half_to_float(static_cast<const uint16_t*>(planes)[index])
                               : static_cast<const float*>(planes)[index];
}

template <class Pixel>
void to_planes(const msn_image& img, msn_plane_type type, void* planes) {
  const int64_t plane = int64_t{img.height} * img.width;
  const float scale = max_value(img.type);
  for (int32_t y = 0; y < img.height; ++y)
    for (int32_t x = 0; x < img.width; ++x)
      for (int32_t c = 0; c < 3; ++c) {
        const Pixel v = pixel_at<Pixel>(img, y, x, img.channels == 1 ? 0 : c);
        store(planes, type, c * plane + int64_t{y} * img.width + x, static_cast<float>(v) / scale);
      }
}

template <class Pixel>
void from_planes(const void* planes, msn_plane_type type, msn_image& img) {
  const int64_t plane = int64_t{img.height} * img.width;
  const float scale = max_value(img.type);
  auto quantise = [scale](float v) {
    v = std::fmin(std::fmax(v, 0.0f), 1.0f);  // callers reject NaN first; fmin/fmax keep the cast defined
    return static_cast<Pixel>(std::nearbyint(v * scale));
  };
  for (int32_t y = 0; y < img.height; ++y)
    for (int32_t x = 0; x < img.width; ++x) {
      const int64_t i = int64_t{y} * img.width + x;
      float rgb[3];
      for (int32_t c = 0; c < 3; ++c) rgb[c] = std::fmin(std::fmax(load(planes, type, c * plane + i), 0.0f), 1.0f);
      if (img.channels == 1) {
        set_pixel<Pixel>(img, y, x, 0, quantise((rgb[0] + rgb[1] + rgb[2]) / 3.0f));
      } else {
        for (int32_t c = 0; c < 3; ++c) set_pixel<Pixel>(img, y, x, c, quantise(rgb[c]));
      }
    }
}

// OpenCV's bicubic kernel (A = -0.75) for a sample at fraction t past the second of four taps.
void cubic_weights(float t, float weight[4]) {
  constexpr float A = -0.75f;
  weight[0] = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
  weight[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
  weight[2] = ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1;
  weight[3] = 1.0f - weight[0] - weight[1] - weight[2];
}

struct CubicTaps {
  int32_t index[4];
  float weight[4];
};

// Where each output sample along an axis reads, as cv::resize(INTER_CUBIC) places it: pixel
// centres aligned, taps past the border repeating the edge.
std::vector<CubicTaps> cubic_taps(int32_t src_len, int32_t dst_len) {
  const double step = static_cast<double>(src_len) / dst_len;
  std::vector<CubicTaps> taps(dst_len);
  for (int32_t d = 0; d < dst_len; ++d) {
    float at = static_cast<float>((d + 0.5) * step - 0.5);
    const auto first = static_cast<int32_t>(std::floor(at));
    cubic_weights(at - first, taps[d].weight);
    for (int32_t k = 0; k < 4; ++k) taps[d].index[k] = std::clamp(first - 1 + k, 0, src_len - 1);
  }
  return taps;
}

// Alpha is not what MSN was trained on: it is resized bicubically, in [0, 1] floats and clamped,
// exactly as the Python runtime does (msn_deploy.engines.media.images.upscale_alpha), so both write the same levels.
template <class Pixel>
void resize_alpha(const msn_image& src, msn_image& dst) {
  const float peak = max_value(src.type);
  const std::vector<CubicTaps> across = cubic_taps(src.width, dst.width), down = cubic_taps(src.height, dst.height);
  std::vector<float> rows(static_cast<size_t>(src.height) * dst.width);  // the horizontal pass
  for (int32_t y = 0; y < src.height; ++y)
    for (int32_t x = 0; x < dst.width; ++x) {
      float sum = 0.0f;
      for (int32_t k = 0; k < 4; ++k)
        sum += across[x].weight[k] * (static_cast<float>(pixel_at<Pixel>(src, y, across[x].index[k], 3)) / peak);
      rows[static_cast<size_t>(y) * dst.width + x] = sum;
    }
  for (int32_t y = 0; y < dst.height; ++y)
    for (int32_t x = 0; x < dst.width; ++x) {
      float sum = 0.0f;
      for (int32_t k = 0; k < 4; ++k) sum += down[y].weight[k] * rows[static_cast<size_t>(down[y].index[k]) * dst.width + x];
      set_pixel<Pixel>(dst, y, x, 3, static_cast<Pixel>(std::nearbyint(std::fmin(std::fmax(sum, 0.0f), 1.0f) * peak)));
    }
}

}  // namespace

void upscale_alpha(const msn_image& src, msn_image& dst) {
  if (src.type == MSN_PIXEL_U16)
    resize_alpha<uint16_t>(src, dst);
  else
    resize_alpha<uint8_t>(src, dst);
}

void check_image(const msn_image* img, const char* name) {
  require_not_null(img, name);
  require_not_null(img->data, (std::string(name) + "->data").c_str());
  require(img->channels == 1 || img->channels == 3 || img->channels == 4, MSN_ERR_UNSUPPORTED_CHANNELS,
          std::string(name) + " has " + std::to_string(img->channels) + " channels; expected 1 (gray), 3 (RGB) or 4 (RGBA)");
  require(img->type == MSN_PIXEL_U8 || img->type == MSN_PIXEL_U16, MSN_ERR_INVALID_ARGUMENT,
          std::string(name) + " has an unknown pixel type");
  require(img->width > 0 && img->height > 0, MSN_ERR_INVALID_ARGUMENT, std::string(name) + " has no pixels");
  const int64_t packed = int64_t{img->width} * img->channels * (img->type == MSN_PIXEL_U16 ? 2 : 1);
  require(img->stride_bytes == 0 || img->stride_bytes >= packed, MSN_ERR_INVALID_ARGUMENT,
          std::string(name) + " stride_bytes is smaller than one row");
}

size_t plane_bytes(int32_t height, int32_t width, msn_plane_type type) {
  return size_t{3} * height * width * (type == MSN_PLANE_F16 ? 2 : 4);
}

void image_to_planes(const msn_image& img, msn_plane_type type, void* planes) {
  if (img.type == MSN_PIXEL_U16)
    to_planes<uint16_t>(img, type, planes);
  else
    to_planes<uint8_t>(img, type, planes);
}

void planes_to_image(const void* planes, msn_plane_type type, msn_image& img) {
  if (img.type == MSN_PIXEL_U16)
    from_planes<uint16_t>(planes, type, img);
  else
    from_planes<uint8_t>(planes, type, img);
}

}  // namespace msn
