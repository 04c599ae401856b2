// TensorRT / TensorRT-RTX backend. Compiled only when CMake finds NvInfer.h and CUDA
// (MSN_WITH_TENSORRT); MSN_TRT_FLAVOUR and MSN_TRT_VERSION come from the headers found.
#include <NvInfer.h>
#include <cuda_runtime_api.h>

#include <fstream>
#include <iostream>
#include <iterator>
#include <vector>

#include "backend.hpp"
#include "errors.hpp"
#include "half.hpp"
#include "sidecar.hpp"

namespace msn {
namespace {

class Logger : public nvinfer1::ILogger {
 public:
  void log(Severity severity, const char* message) noexcept override {
    if (severity <= Severity::kWARNING) std::cerr << "[TensorRT] " << message << "\n";
  }
};

void check_cuda(cudaError_t status, const char* what) {
  require(status == cudaSuccess, MSN_ERR_RUNTIME, std::string(what) + ": " + cudaGetErrorString(status));
}

std::string gpu_compute_capability() {
  int device = 0;
  cudaDeviceProp prop{};
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "";
  return "SM" + std::to_string(prop.major) + std::to_string(prop.minor);
}

class DeviceBuffer {
 public:
  ~DeviceBuffer() { cudaFree(ptr_); }
  void* reserve(size_t bytes) {
    if (bytes > size_) {
      cudaFree(ptr_);
      ptr_ = nullptr;
      check_cuda(cudaMalloc(&ptr_, bytes), "cudaMalloc");
      size_ = bytes;
    }
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t size_ = 0;
};

class TensorRTBackend final : public Backend {
 public:
  explicit TensorRTBackend(const std::string& path) : sidecar_(read_sidecar(path + ".json")) {
    const auto problems = compatibility_problems(sidecar_, MSN_TRT_FLAVOUR, MSN_TRT_VERSION, gpu_compute_capability());
    if (!problems.empty()) {
      std::string message = "cannot run " + path + ":";
      for (const auto& p : problems) message += " " + p + ";";
      throw Error(MSN_ERR_ENGINE_MISMATCH, message);
    }
    std::ifstream in(path, std::ios::binary);
    require(in.good(), MSN_ERR_IO, "cannot read engine " + path);
    const std::vector<char> plan((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    runtime_.reset(nvinfer1::createInferRuntime(logger_));
    require(runtime_ != nullptr, MSN_ERR_RUNTIME, "TensorRT runtime could not be created");
    engine_.reset(runtime_->deserializeCudaEngine(plan.data(), plan.size()));
    require(engine_ != nullptr, MSN_ERR_ENGINE_MISMATCH, "TensorRT could not deserialise " + path + " (corrupt, or built for another GPU)");
    context_.reset(engine_->createExecutionContext());
    require(context_ != nullptr, MSN_ERR_RUNTIME, "TensorRT execution context could not be created");
    check_cuda(cudaStreamCreate(&stream_), "cudaStreamCreate");
    half_in_ = sidecar_.input_dtype == "float16";
    half_out_ = sidecar_.output_dtype == "float16";
  }
  ~TensorRTBackend() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  int32_t scale() const override { return sidecar_.scale; }
  std::array<int32_t, 3> min_shape() const override { return sidecar_.min; }
  std::array<int32_t, 3> max_shape() const override { return sidecar_.max; }

  void infer(const float* input, int32_t n, int32_t h, int32_t w, float* output) override {
    const size_t in_count = size_t{3} * n * h * w;
    const size_t out_count = in_count * sidecar_.scale * sidecar_.scale;
    const size_t in_elem = half_in_ ? 2 : 4, out_elem = half_out_ ? 2 : 4;
    std::vector<uint16_t> staging;
    const void* host_in = input;
    if (half_in_) {
      staging.resize(in_count);
      for (size_t i = 0; i < in_count; ++i) staging[i] = float_to_half(input[i]);
      host_in = staging.data();
    }
    void* d_in = in_.reserve(in_count * in_elem);
    void* d_out = out_.reserve(out_count * out_elem);
    check_cuda(cudaMemcpyAsync(d_in, host_in, in_count * in_elem, cudaMemcpyHostToDevice, stream_), "copy to GPU");
    require(context_->setInputShape(sidecar_.input_name.c_str(), nvinfer1::Dims4{n, 3, h, w}), MSN_ERR_OUTSIDE_PROFILE,
            "input shape is outside the engine's profile");
    // The output buffer is sized from the sidecar's scale: check the engine agrees before it writes.
    const nvinfer1::Dims out_dims = context_->getTensorShape(sidecar_.output_name.c_str());
    const int64_t s = sidecar_.scale;
    require(out_dims.nbDims == 4 && out_dims.d[0] == n && out_dims.d[1] == 3 && out_dims.d[2] == h * s &&
                out_dims.d[3] == w * s,
            MSN_ERR_ENGINE_MISMATCH, "the engine's output shape does not match the x" + std::to_string(s) +
                                         " its sidecar promises; rebuild it from an MSN graph");
    context_->setTensorAddress(sidecar_.input_name.c_str(), d_in);
    context_->setTensorAddress(sidecar_.output_name.c_str(), d_out);
    require(context_->enqueueV3(stream_), MSN_ERR_RUNTIME, "TensorRT enqueueV3 failed (see the log above)");
    std::vector<uint16_t> half_out(half_out_ ? out_count : 0);
    void* host_out = half_out_ ? static_cast<void*>(half_out.data()) : static_cast<void*>(output);
    check_cuda(cudaMemcpyAsync(host_out, d_out, out_count * out_elem, cudaMemcpyDeviceToHost, stream_), "copy from GPU");
    check_cuda(cudaStreamSynchronize(stream_), "cudaStreamSynchronize");
    if (half_out_)
      for (size_t i = 0; i < out_count; ++i) output[i] = half_to_float(half_out[i]);
  }

 private:
  Sidecar sidecar_;
  Logger logger_;
  std::unique_ptr<nvinfer1::IRuntime> runtime_;
  std::unique_ptr<nvinfer1::ICudaEngine> engine_;
  std::unique_ptr<nvinfer1::IExecutionContext> context_;
  cudaStream_t stream_ = nullptr;
  DeviceBuffer in_, out_;
  bool half_in_ = false, half_out_ = false;
};

}  // namespace

std::unique_ptr<Backend> make_tensorrt_backend(const std::string& plan_path) {
  return std::make_unique<TensorRTBackend>(plan_path);
}

}  // namespace msn
