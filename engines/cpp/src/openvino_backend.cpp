// OpenVINO backend (CPU plugin) for the .onnx graphs written by export/to_onnx.py. Compiled only
// when CMake finds OpenVINO (the `openvino` wheel ships its headers and CMake package).
//
// Like the Python runtime (engines/openvino_engine.py), it compiles the graph once per input
// shape and keeps the most recent compilations in a small LRU cache: OpenVINO runs a static
// shape about twice as fast as the dynamic graph, and a compile costs about a second.
#include <openvino/openvino.hpp>

#include <cstdlib>
#include <list>
#include <string>
#include <utility>

#include "backend.hpp"
#include "errors.hpp"

namespace msn {
namespace {

using Shape3 = std::array<int32_t, 3>;  // N, H, W

size_t cache_size_from_env() {
  const char* text = std::getenv("MSN_OPENVINO_CACHE_SIZE");
  if (!text || !*text) return 4;
  char* end = nullptr;
  const long value = std::strtol(text, &end, 10);
  require(*end == '\0' && value >= 1 && value <= 1024, MSN_ERR_INVALID_ARGUMENT,
          std::string("MSN_OPENVINO_CACHE_SIZE must be an integer in [1, 1024], got '") + text + "'");
  return static_cast<size_t>(value);
}

class OpenVINOBackend final : public Backend {
 public:
  explicit OpenVINOBackend(const std::string& path) : cache_size_(cache_size_from_env()) {
    try {
      model_ = core_.read_model(path);
    } catch (const ov::Exception& e) {
      throw Error(MSN_ERR_IO, "OpenVINO cannot read " + path + " as an ONNX graph: " + first_line(e.what()));
    }
    require(model_->inputs().size() == 1 && model_->outputs().size() == 1, MSN_ERR_INVALID_ARGUMENT,
            path + " must have one input and one output (an MSN graph from export/to_onnx.py)");
    const ov::PartialShape in = model_->input().get_partial_shape();
    require(in.rank().is_static() && in.rank().get_length() == 4 && in[1].is_static() && in[1].get_length() == 3,
            MSN_ERR_INVALID_ARGUMENT, path + " does not take an N x 3 x H x W input");
    for (int i = 0; i < 3; ++i) {
      const ov::Dimension& d = in[i == 0 ? 0 : i + 1];
      min_[i] = d.is_static() ? static_cast<int32_t>(d.get_length()) : (i == 0 ? 1 : MSN_MIN_INPUT_SIZE);
      max_[i] = d.is_static() ? static_cast<int32_t>(d.get_length()) : INT32_MAX;
    }
    // float16-I/O graphs take and give float32 here too: OpenVINO converts at the edges.
    ov::preprocess::PrePostProcessor ppp(model_);
    ppp.input().tensor().set_element_type(ov::element::f32);
    ppp.output().tensor().set_element_type(ov::element::f32);
    model_ = ppp.build();
    // The scale comes from the graph itself, not from a claim about it: one probe at the minimum shape.
    const ov::PartialShape out = probe_output_shape(min_);
    require(out.rank().is_static() && out.rank().get_length() == 4 && out.is_static() && out[1].get_length() == 3,
            MSN_ERR_INVALID_ARGUMENT, path + " does not give an N x 3 x H x W output");
    const int64_t oh = out[2].get_length(), ow = out[3].get_length();
    require(oh % min_[1] == 0 && oh / min_[1] == ow / min_[2] && ow % min_[2] == 0 && oh / min_[1] >= 1,
            MSN_ERR_INVALID_ARGUMENT, path + " does not upscale by an integer factor (" + std::to_string(min_[1]) + "x" +
                                          std::to_string(min_[2]) + " -> " + std::to_string(oh) + "x" + std::to_string(ow) + ")");
    scale_ = static_cast<int32_t>(oh / min_[1]);
  }

  int32_t scale() const override { return scale_; }
  Shape3 min_shape() const override { return min_; }
  Shape3 max_shape() const override { return max_; }

  void infer(const float* input, int32_t n, int32_t h, int32_t w, float* output) override {
    ov::InferRequest& request = request_for({n, h, w});
    const ov::Shape in_shape{size_t(n), 3, size_t(h), size_t(w)};
    const ov::Shape out_shape{size_t(n), 3, size_t(h) * scale_, size_t(w) * scale_};
    try {
      // OpenVINO reads the caller's input and writes straight into the caller's output buffer.
      request.set_input_tensor(ov::Tensor(ov::element::f32, in_shape, const_cast<float*>(input)));
      request.set_output_tensor(ov::Tensor(ov::element::f32, out_shape, output));
      request.infer();
    } catch (const ov::Exception& e) {
      throw Error(MSN_ERR_RUNTIME, std::string("OpenVINO inference failed: ") + first_line(e.what()));
    }
  }

 private:
  static std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

  std::shared_ptr<ov::Model> reshaped(const Shape3& s) const {
    auto model = model_->clone();
    model->reshape(ov::PartialShape{s[0], 3, s[1], s[2]});
    return model;
  }

  ov::PartialShape probe_output_shape(const Shape3& s) const {
    try {
      return reshaped(s)->output().get_partial_shape();
    } catch (const ov::Exception& e) {
      throw Error(MSN_ERR_INVALID_ARGUMENT, "OpenVINO cannot reshape the graph: " + first_line(e.what()));
    }
  }

  ov::InferRequest& request_for(const Shape3& s) {
    for (auto it = cache_.begin(); it != cache_.end(); ++it) {
      if (it->first == s) {
        cache_.splice(cache_.begin(), cache_, it);  // most recently used first
        return cache_.front().second;
      }
    }
    ov::CompiledModel compiled;
    try {
      // f32 precision: some CPUs would otherwise run bf16 and lose FP32 parity.
      compiled = core_.compile_model(reshaped(s), "CPU", ov::hint::inference_precision(ov::element::f32),
                                     ov::hint::performance_mode(ov::hint::PerformanceMode::LATENCY));
    } catch (const ov::Exception& e) {
      throw Error(MSN_ERR_RUNTIME, "OpenVINO cannot compile the graph for " + std::to_string(s[0]) + "x" +
                                       std::to_string(s[1]) + "x" + std::to_string(s[2]) + ": " + first_line(e.what()));
    }
    cache_.emplace_front(s, compiled.create_infer_request());
    if (cache_.size() > cache_size_) cache_.pop_back();
    return cache_.front().second;
  }

  ov::Core core_;
  std::shared_ptr<ov::Model> model_;
  size_t cache_size_;
  std::list<std::pair<Shape3, ov::InferRequest>> cache_;
  int32_t scale_ = 0;
  Shape3 min_{}, max_{};
};

}  // namespace

std::unique_ptr<Backend> make_openvino_backend(const std::string& onnx_path) {
  return std::make_unique<OpenVINOBackend>(onnx_path);
}

}  // namespace msn
