#include "sidecar.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "errors.hpp"

namespace msn {

std::string canonical_dtype(const std::string& name, const std::string& path) {
  if (name == "float32" || name == "float") return "float32";
  if (name == "float16" || name == "half") return "float16";
  throw Error(MSN_ERR_SIDECAR_INVALID,
              "sidecar " + path + " has tensor dtype '" + name + "'; MSN engines use float32 or float16");
}

Sidecar read_sidecar(const std::string& path) {
  std::error_code ec;
  require(std::filesystem::is_regular_file(path, ec), MSN_ERR_IO,
          "sidecar " + path + " is not a file; rebuild the engine with export/build_trt.py");
  std::ifstream in(path);
  require(in.good(), MSN_ERR_IO, "cannot read sidecar " + path + "; rebuild the engine with export/build_trt.py");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Error(MSN_ERR_SIDECAR_INVALID, "sidecar " + path + " is not valid JSON: " + e.what());
  }
  // Written by export/artifacts.py (EngineSidecar). Format 1 stored TensorRT's dtype names
  // (float, half), format 2 stores float32 / float16; both are read.
  const bool has_format = j.is_object() && j.contains("format") && j["format"].is_string();
  const std::string format = has_format ? j["format"].get<std::string>() : "";
  require(format == "msn-engine/1" || format == "msn-engine/2", MSN_ERR_SIDECAR_INVALID,
          "sidecar " + path + " is not an msn-engine/2 sidecar; rebuild the engine with export/build_trt.py");
  try {
    Sidecar s;
    s.flavour = j.at("tensorrt").at("flavour").get<std::string>();
    s.version = j.at("tensorrt").at("version").get<std::string>();
    const auto& target = j.at("target");
    s.compute_capabilities = target.at("compute_capabilities").get<std::vector<std::string>>();
    if (target.contains("gpu") && target["gpu"].is_object()) {
      s.built_on_gpu = target["gpu"].at("name").get<std::string>();
      s.built_on_compute_capability = target["gpu"].at("compute_capability").get<std::string>();
    }
    s.precision = j.at("precision").get<std::string>();
    s.scale = j.at("scale").get<int32_t>();
    s.onnx_path = j.at("onnx").at("path").get<std::string>();
    s.min = j.at("profile").at("min").get<std::array<int32_t, 3>>();
    s.opt = j.at("profile").at("opt").get<std::array<int32_t, 3>>();
    s.max = j.at("profile").at("max").get<std::array<int32_t, 3>>();
    for (const auto& t : j.at("io")) {
      const bool input = t.at("mode").get<std::string>() == "input";
      (input ? s.input_name : s.output_name) = t.at("name").get<std::string>();
      (input ? s.input_dtype : s.output_dtype) = canonical_dtype(t.at("dtype").get<std::string>(), path);
    }
    require(s.scale >= 1 && !s.input_name.empty() && !s.output_name.empty(), MSN_ERR_SIDECAR_INVALID,
            "sidecar " + path + " lacks scale or I/O names");
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(MSN_ERR_SIDECAR_INVALID, "sidecar " + path + " is missing a field: " + e.what());
  }
}

bool same_release(const std::string& a, const std::string& b) {
  auto release = [](const std::string& v) {
    size_t dots = 0, i = 0;
    for (; i < v.size(); ++i)
      if (v[i] == '.' && ++dots == 3) break;
    return v.substr(0, i);
  };
  return release(a) == release(b);
}

std::vector<std::string> compatibility_problems(const Sidecar& s, const std::string& flavour,
                                                const std::string& version, const std::string& cc) {
  const std::string rebuild = "rebuild with: python export/build_trt.py --onnx " + s.onnx_path + " --backend " + s.flavour;
  std::vector<std::string> problems;
  if (flavour != s.flavour) {
    problems.push_back("engine was built with " + s.flavour + " " + s.version + ", this build uses " + flavour + " " +
                       version + "; " + rebuild);
  } else if (!same_release(version, s.version)) {
    problems.push_back("engine was built with " + s.flavour + " " + s.version + ", this machine has " + version +
                       "; " + rebuild);
  }
  if (cc.empty()) {
    problems.push_back("TensorRT engines need an NVIDIA GPU and none is visible");
  } else if (!s.compute_capabilities.empty()) {
    const auto& t = s.compute_capabilities;
    if (std::find(t.begin(), t.end(), cc) == t.end()) {
      std::string list;
      for (const auto& c : t) list += (list.empty() ? "" : ", ") + c;
      problems.push_back("engine targets [" + list + "] but this GPU is " + cc + "; " + rebuild);
    }
  } else if (!s.built_on_compute_capability.empty() && s.built_on_compute_capability != cc) {
    problems.push_back("engine was built on " + s.built_on_gpu + " (" + s.built_on_compute_capability +
                       "), this GPU is " + cc + "; " + rebuild);
  }
  return problems;
}

}  // namespace msn
