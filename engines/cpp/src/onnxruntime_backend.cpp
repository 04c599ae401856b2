// ONNX Runtime backend (C++ API). Compiled only when CMake finds onnxruntime_cxx_api.h and the
// library (MSN_WITH_ONNXRUNTIME). Runs the graphs written by export/to_onnx.py with float32 I/O.
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <string>
#include <vector>

#include "backend.hpp"
#include "errors.hpp"

namespace msn {
namespace {

class OnnxRuntimeBackend final : public Backend {
 public:
  explicit OnnxRuntimeBackend(const std::string& path) : env_(ORT_LOGGING_LEVEL_WARNING, "msn_infer") {
    Ort::SessionOptions options;
    // Measured faster than ORT_ENABLE_ALL for MSN on CPU (see docs/BENCHMARKS.md).
    options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_BASIC);
    try {
      session_ = Ort::Session(env_, path.c_str(), options);
    } catch (const Ort::Exception& e) {
      throw Error(MSN_ERR_IO, "ONNX Runtime cannot load " + path + ": " + e.what());
    }
    Ort::AllocatorWithDefaultOptions allocator;
    const Ort::ModelMetadata meta = session_.GetModelMetadata();
    const auto name = meta.LookupCustomMetadataMapAllocated("model_name", allocator);
    require(name && std::string(name.get()) == "MSN", MSN_ERR_INVALID_ARGUMENT,
            path + " is not an MSN graph exported by msn-deploy (metadata model_name missing)");
    const auto scale = meta.LookupCustomMetadataMapAllocated("scale", allocator);
    scale_ = scale ? std::stoi(scale.get()) : 0;
    require(scale_ >= 1, MSN_ERR_INVALID_ARGUMENT, path + " has no scale in its metadata");
    input_name_ = session_.GetInputNameAllocated(0, allocator).get();
    output_name_ = session_.GetOutputNameAllocated(0, allocator).get();
    const Ort::TypeInfo type_info = session_.GetInputTypeInfo(0);  // the shape info below is a view into it
    const auto info = type_info.GetTensorTypeAndShapeInfo();
    require(info.GetElementType() == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, MSN_ERR_INVALID_ARGUMENT,
            path + " has float16 I/O; export it with --io-dtype float32 for this backend");
    const auto shape = info.GetShape();  // -1 marks a dynamic axis
    const int64_t fixed[3] = {shape[0], shape[2], shape[3]};
    for (int i = 0; i < 3; ++i) {
      min_[i] = fixed[i] > 0 ? static_cast<int32_t>(fixed[i]) : (i == 0 ? 1 : MSN_MIN_INPUT_SIZE);
      max_[i] = fixed[i] > 0 ? static_cast<int32_t>(fixed[i]) : INT32_MAX;
    }
  }

  int32_t scale() const override { return scale_; }
  std::array<int32_t, 3> min_shape() const override { return min_; }
  std::array<int32_t, 3> max_shape() const override { return max_; }

  void infer(const float* input, int32_t n, int32_t h, int32_t w, float* output) override {
    const Ort::MemoryInfo memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    const int64_t in_shape[4] = {n, 3, h, w};
    const int64_t out_shape[4] = {n, 3, int64_t{h} * scale_, int64_t{w} * scale_};
    const size_t in_count = size_t{3} * n * h * w, out_count = in_count * scale_ * scale_;
    // ORT reads the input and writes the output in place: no copies on either side.
    Ort::Value in = Ort::Value::CreateTensor<float>(memory, const_cast<float*>(input), in_count, in_shape, 4);
    Ort::Value out = Ort::Value::CreateTensor<float>(memory, output, out_count, out_shape, 4);
    const char* in_names[] = {input_name_.c_str()};
    const char* out_names[] = {output_name_.c_str()};
    try {
      session_.Run(Ort::RunOptions{nullptr}, in_names, &in, 1, out_names, &out, 1);
    } catch (const Ort::Exception& e) {
      throw Error(MSN_ERR_RUNTIME, std::string("ONNX Runtime failed: ") + e.what());
    }
  }

 private:
  Ort::Env env_;
  Ort::Session session_{nullptr};
  std::string input_name_, output_name_;
  int32_t scale_ = 0;
  std::array<int32_t, 3> min_{}, max_{};
};

}  // namespace

std::unique_ptr<Backend> make_onnxruntime_backend(const std::string& onnx_path) {
  return std::make_unique<OnnxRuntimeBackend>(onnx_path);
}

}  // namespace msn
