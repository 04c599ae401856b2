// Header-only C++17 wrapper over msn_infer.h: RAII handles, exceptions instead of status codes.
// Uses only the public C header, so it works with any build of the library.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "msn/msn_infer.h"

namespace msn {

class Exception : public std::runtime_error {
 public:
  Exception(msn_status status, const std::string& message)
      : std::runtime_error(std::string(msn_status_name(status)) + ": " + message), status_(status) {}
  msn_status status() const noexcept { return status_; }

 private:
  msn_status status_;
};

inline void check(msn_status status) {
  if (status != MSN_OK) throw Exception(status, msn_last_error());
}

// An interleaved image that owns its pixels.
template <class Pixel>
struct Image {
  int32_t width = 0, height = 0, channels = 3;
  std::vector<Pixel> pixels;

  Image() = default;
  Image(int32_t w, int32_t h, int32_t c) : width(w), height(h), channels(c), pixels(size_t(w) * h * c) {}
  msn_image view() {
    return {pixels.data(), width, height, channels, 0, sizeof(Pixel) == 2 ? MSN_PIXEL_U16 : MSN_PIXEL_U8};
  }
};

// A TensorRT engine (.plan with its .json sidecar) or ONNX graph (.onnx), run by whichever backend
// this build has. Construction throws msn::Exception on any mismatch.
class Engine {
 public:
  explicit Engine(const std::string& path) { check(msn_engine_create(path.c_str(), &handle_)); }
  ~Engine() { msn_engine_destroy(handle_); }
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  Engine(Engine&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
  Engine& operator=(Engine&& other) noexcept {
    std::swap(handle_, other.handle_);
    return *this;
  }

  int32_t scale() const { return msn_engine_scale(handle_); }

  // tile = 0: tile only when the image exceeds the engine's profile. Sizes in LR pixels.
  template <class Pixel>
  Image<Pixel> upscale(Image<Pixel>& input, int32_t tile = 0, int32_t overlap = 32) {
    Image<Pixel> output(input.width * scale(), input.height * scale(), input.channels);
    msn_image in = input.view(), out = output.view();
    check(msn_engine_upscale(handle_, &in, &out, tile, overlap));
    return output;
  }

 private:
  msn_engine* handle_ = nullptr;
};

}  // namespace msn
