// A runtime that executes one engine file. Backends are compiled only where their SDK is found.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

namespace msn {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual int32_t scale() const = 0;
  // Accepted input shapes, N/H/W inclusive.
  virtual std::array<int32_t, 3> min_shape() const = 0;
  virtual std::array<int32_t, 3> max_shape() const = 0;
  // input n x 3 x h x w float32 (host) -> output n x 3 x (h*scale) x (w*scale) float32 (host).
  virtual void infer(const float* input, int32_t n, int32_t h, int32_t w, float* output) = 0;
};

#ifdef MSN_WITH_TENSORRT
std::unique_ptr<Backend> make_tensorrt_backend(const std::string& plan_path);
#endif
#ifdef MSN_WITH_OPENVINO
std::unique_ptr<Backend> make_openvino_backend(const std::string& onnx_path);
#endif

}  // namespace msn
