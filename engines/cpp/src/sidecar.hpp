// The JSON sidecar that export/artifacts.py (EngineSidecar) writes beside every engine
// (format msn-engine/2; msn-engine/1 files are read too).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

namespace msn {

struct Sidecar {
  std::string flavour;   // "tensorrt" or "tensorrt_rtx"
  std::string version;   // exact TensorRT version the plan was built with
  std::vector<std::string> compute_capabilities;  // AOT targets ("SM86"), empty = the build GPU
  std::string built_on_compute_capability;        // "" when built without a GPU
  std::string built_on_gpu;
  std::string precision;
  std::string onnx_path;
  int32_t scale = 0;
  std::array<int32_t, 3> min{}, opt{}, max{};  // N, H, W
  std::string input_name, output_name, input_dtype, output_dtype;  // dtypes: "float32" or "float16"
};

// "float32" / "float16" for the names either format stores; throws Error(MSN_ERR_SIDECAR_INVALID).
std::string canonical_dtype(const std::string& name, const std::string& path);

Sidecar read_sidecar(const std::string& path);  // throws Error(MSN_ERR_SIDECAR_INVALID / MSN_ERR_IO)
// Versions match when major.minor.patch agree (C++ headers carry no build number; Python has it).
bool same_release(const std::string& a, const std::string& b);
// Why an engine with this sidecar cannot run here (empty = it can); same rules as the Python runtime.
std::vector<std::string> compatibility_problems(const Sidecar& sidecar, const std::string& flavour,
                                                const std::string& version, const std::string& compute_capability);

}  // namespace msn
