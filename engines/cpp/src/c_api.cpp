// The exported C ABI: argument checks, then the internal C++ pieces, all behind guard().
#include <algorithm>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "backend.hpp"
#include "errors.hpp"
#include "image.hpp"
#include "msn/msn_infer.h"
#include "sidecar.hpp"
#include "tiling.hpp"
#include "upscale.hpp"

struct msn_sidecar {
  msn::Sidecar value;
};

struct msn_engine {
  std::unique_ptr<msn::Backend> backend;
};

namespace msn {

thread_local std::string last_error;

// Messages may quote file contents (a binary file given as JSON): keep them printable ASCII.
void set_last_error(const std::string& message) {
  static const char kHex[] = "0123456789abcdef";
  last_error.clear();
  for (const unsigned char c : message) {
    if (c >= 0x20 && c < 0x7f) {
      last_error += static_cast<char>(c);
    } else {
      last_error += "\\x";
      last_error += kHex[c >> 4];
      last_error += kHex[c & 15];
    }
  }
}

}  // namespace msn

using msn::Error;
using msn::guard;
using msn::require;
using msn::require_not_null;

extern "C" {

const char* msn_version(void) { return MSN_VERSION; }

const char* msn_last_error(void) { return msn::last_error.c_str(); }

const char* msn_status_name(msn_status status) {
  switch (status) {
    case MSN_OK: return "MSN_OK";
    case MSN_ERR_NULL_ARGUMENT: return "MSN_ERR_NULL_ARGUMENT";
    case MSN_ERR_INVALID_ARGUMENT: return "MSN_ERR_INVALID_ARGUMENT";
    case MSN_ERR_IMAGE_TOO_SMALL: return "MSN_ERR_IMAGE_TOO_SMALL";
    case MSN_ERR_UNSUPPORTED_CHANNELS: return "MSN_ERR_UNSUPPORTED_CHANNELS";
    case MSN_ERR_BUFFER_TOO_SMALL: return "MSN_ERR_BUFFER_TOO_SMALL";
    case MSN_ERR_IO: return "MSN_ERR_IO";
    case MSN_ERR_SIDECAR_INVALID: return "MSN_ERR_SIDECAR_INVALID";
    case MSN_ERR_ENGINE_MISMATCH: return "MSN_ERR_ENGINE_MISMATCH";
    case MSN_ERR_BACKEND_UNAVAILABLE: return "MSN_ERR_BACKEND_UNAVAILABLE";
    case MSN_ERR_OUTSIDE_PROFILE: return "MSN_ERR_OUTSIDE_PROFILE";
    case MSN_ERR_RUNTIME: return "MSN_ERR_RUNTIME";
    case MSN_ERR_INTERNAL: return "MSN_ERR_INTERNAL";
  }
  return "MSN_ERR_UNKNOWN";
}

int32_t msn_available_backends(void) {
  int32_t mask = 0;
#ifdef MSN_WITH_TENSORRT
  mask |= MSN_BACKEND_TENSORRT;
#endif
#ifdef MSN_WITH_OPENVINO
  mask |= MSN_BACKEND_OPENVINO;
#endif
  return mask;
}

msn_status msn_image_to_planes(const msn_image* image, msn_plane_type type, void* planes, size_t planes_bytes) {
  return guard([&] {
    msn::check_image(image, "image");
    require_not_null(planes, "planes");
    const size_t needed = msn::plane_bytes(image->height, image->width, type);
    require(planes_bytes >= needed, MSN_ERR_BUFFER_TOO_SMALL,
            "planes buffer has " + std::to_string(planes_bytes) + " bytes, needs " + std::to_string(needed));
    msn::image_to_planes(*image, type, planes);
  });
}

msn_status msn_planes_to_image(const void* planes, msn_plane_type type, msn_image* image) {
  return guard([&] {
    require_not_null(planes, "planes");
    msn::check_image(image, "image");
    msn::planes_to_image(planes, type, *image);
  });
}

msn_status msn_tile_plan(int32_t height, int32_t width, int32_t tile, int32_t overlap, msn_tile* tiles,
                         int32_t capacity, int32_t* count) {
  return guard([&] {
    require_not_null(count, "count");
    require(capacity == 0 || tiles != nullptr, MSN_ERR_NULL_ARGUMENT, "tiles is NULL but capacity > 0");
    const auto plan = msn::plan_tiles(height, width, tile, overlap);
    *count = static_cast<int32_t>(plan.size());
    require(capacity >= *count || capacity == 0, MSN_ERR_BUFFER_TOO_SMALL,
            "plan has " + std::to_string(*count) + " tiles, capacity is " + std::to_string(capacity));
    if (capacity) std::copy(plan.begin(), plan.end(), tiles);
  });
}

msn_status msn_tile_weight(int32_t height, int32_t width, int32_t overlap, const msn_tile* tile, int32_t scale,
                           float* weights, size_t count) {
  return guard([&] {
    require_not_null(tile, "tile");
    require_not_null(weights, "weights");
    require(scale >= 1, MSN_ERR_INVALID_ARGUMENT, "scale must be >= 1");
    require(tile->h > 0 && tile->w > 0 && tile->y >= 0 && tile->x >= 0 && tile->y + tile->h <= height &&
                tile->x + tile->w <= width,
            MSN_ERR_INVALID_ARGUMENT, "tile lies outside the image");
    const auto w = msn::tile_weight(height, width, overlap, *tile, scale);
    require(count >= w.size(), MSN_ERR_BUFFER_TOO_SMALL, "weights buffer needs " + std::to_string(w.size()) + " floats");
    std::copy(w.begin(), w.end(), weights);
  });
}

msn_status msn_upscale_planes(const float* input, int32_t height, int32_t width, int32_t scale, int32_t tile,
                              int32_t overlap, msn_infer_fn infer, void* user, float* output) {
  return guard([&] {
    require_not_null(input, "input");
    require_not_null(output, "output");
    require(infer != nullptr, MSN_ERR_NULL_ARGUMENT, "infer callback is NULL");
    msn::upscale_planes(input, height, width, scale, tile, overlap,
                        [&](const float* in, int32_t n, int32_t h, int32_t w, float* out) {
                          const msn_status status = infer(user, in, n, h, w, out);
                          if (status != MSN_OK)
                            throw Error(status, "infer callback failed with " + std::string(msn_status_name(status)));
                        },
                        output);
  });
}

msn_status msn_sidecar_load(const char* json_path, msn_sidecar** out) {
  return guard([&] {
    require_not_null(json_path, "json_path");
    require_not_null(out, "out");
    *out = nullptr;
    auto sidecar = std::make_unique<msn_sidecar>();
    sidecar->value = msn::read_sidecar(json_path);
    *out = sidecar.release();
  });
}

void msn_sidecar_destroy(msn_sidecar* sidecar) { delete sidecar; }

int32_t msn_sidecar_scale(const msn_sidecar* sidecar) { return sidecar ? sidecar->value.scale : 0; }

msn_status msn_sidecar_profile(const msn_sidecar* sidecar, int32_t min[3], int32_t opt[3], int32_t max[3]) {
  return guard([&] {
    require_not_null(sidecar, "sidecar");
    require(min && opt && max, MSN_ERR_NULL_ARGUMENT, "profile output arrays must not be NULL");
    std::copy(sidecar->value.min.begin(), sidecar->value.min.end(), min);
    std::copy(sidecar->value.opt.begin(), sidecar->value.opt.end(), opt);
    std::copy(sidecar->value.max.begin(), sidecar->value.max.end(), max);
  });
}

msn_status msn_sidecar_io_dtypes(const msn_sidecar* sidecar, const char** input_dtype, const char** output_dtype) {
  return guard([&] {
    require_not_null(sidecar, "sidecar");
    require(input_dtype && output_dtype, MSN_ERR_NULL_ARGUMENT, "dtype outputs must not be NULL");
    *input_dtype = sidecar->value.input_dtype.c_str();
    *output_dtype = sidecar->value.output_dtype.c_str();
  });
}

msn_status msn_sidecar_check(const msn_sidecar* sidecar, const char* flavour, const char* version,
                             const char* compute_capability) {
  return guard([&] {
    require_not_null(sidecar, "sidecar");
    require(flavour && version, MSN_ERR_NULL_ARGUMENT, "flavour and version must not be NULL");
    const auto problems = msn::compatibility_problems(sidecar->value, flavour, version,
                                                      compute_capability ? compute_capability : "");
    if (!problems.empty()) {
      std::string message;
      for (const auto& p : problems) message += (message.empty() ? "" : "; ") + p;
      throw Error(MSN_ERR_ENGINE_MISMATCH, message);
    }
  });
}

msn_status msn_engine_create(const char* path, msn_engine** out) {
  return guard([&] {
    require_not_null(path, "path");
    require_not_null(out, "out");
    *out = nullptr;
    const std::string p(path);
    auto ends_with = [&p](const std::string& suffix) {
      return p.size() >= suffix.size() && p.compare(p.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    const bool is_plan = ends_with(".plan") || ends_with(".engine");
    const bool is_onnx = ends_with(".onnx");
    require(is_plan || is_onnx, MSN_ERR_INVALID_ARGUMENT,
            p + ": expected a TensorRT engine (.plan or .engine, with its .json sidecar) or an ONNX graph (.onnx)");
    // Said here: the runtimes' own messages for a missing file name only their source lines.
    auto require_file = [&p] {
      std::error_code ec;
      require(std::filesystem::is_regular_file(p, ec), MSN_ERR_IO, "model " + p + " does not exist (or is not a file)");
    };
    auto engine = std::make_unique<msn_engine>();
#ifdef MSN_WITH_TENSORRT
    if (is_plan) {
      require_file();
      engine->backend = msn::make_tensorrt_backend(p);
    }
#endif
#ifdef MSN_WITH_OPENVINO
    if (is_onnx) {
      require_file();
      engine->backend = msn::make_openvino_backend(p);
    }
#endif
    require(engine->backend != nullptr, MSN_ERR_BACKEND_UNAVAILABLE,
            std::string("this build of msn_infer has no ") + (is_plan ? "TensorRT" : "OpenVINO") +
                " backend (CMake did not find its headers); rebuild with " +
                (is_plan ? "-DTensorRT_ROOT=..." : "-DOpenVINO_DIR=<site-packages>/openvino/cmake") + " or run the artifact from Python");
    *out = engine.release();
  });
}

void msn_engine_destroy(msn_engine* engine) { delete engine; }

int32_t msn_engine_scale(const msn_engine* engine) { return engine ? engine->backend->scale() : 0; }

msn_status msn_engine_upscale(msn_engine* engine, const msn_image* input, msn_image* output, int32_t tile,
                              int32_t overlap) {
  return guard([&] {
    require_not_null(engine, "engine");
    msn::check_image(input, "input");
    msn::check_image(output, "output");
    const int32_t s = engine->backend->scale();
    require(output->width == input->width * s && output->height == input->height * s &&
                output->channels == input->channels && output->type == input->type,
            MSN_ERR_BUFFER_TOO_SMALL, "output must be the input's size times " + std::to_string(s) +
                                          " with the same channels and pixel type");
    require(tile >= 0, MSN_ERR_INVALID_ARGUMENT, "tile must be 0 (whole image) or at least 29, got " + std::to_string(tile));
    const auto lo = engine->backend->min_shape(), hi = engine->backend->max_shape();
    const bool fits = input->height >= lo[1] && input->width >= lo[2] && input->height <= hi[1] && input->width <= hi[2];
    if (tile == 0 && !fits) {  // same rule as the Python runtime: the largest tile the profile allows
      tile = std::min(hi[1], hi[2]);
      overlap = std::min(overlap, tile / 2 - 1);
    }
    if (tile > 0) {
      require(tile <= hi[1] && tile <= hi[2], MSN_ERR_OUTSIDE_PROFILE,
              "tile " + std::to_string(tile) + " is larger than the engine's profile");
    }
    std::vector<float> in_planes(size_t{3} * input->height * input->width);
    std::vector<float> out_planes(in_planes.size() * s * s);
    msn::image_to_planes(*input, MSN_PLANE_F32, in_planes.data());
    // A graph or engine whose batch is fixed above 1 runs one image padded to its minimum batch.
    const int32_t min_batch = std::max(lo[0], 1);
    std::vector<float> batch_in, batch_out;
    msn::upscale_planes(in_planes.data(), input->height, input->width, s, tile, overlap,
                        [&](const float* in, int32_t n, int32_t h, int32_t w, float* out) {
                          if (n >= min_batch) return engine->backend->infer(in, n, h, w, out);
                          const size_t in_count = size_t{3} * h * w, out_count = in_count * s * s;
                          batch_in.resize(in_count * min_batch);
                          batch_out.resize(out_count * min_batch);
                          for (int32_t i = 0; i < min_batch; ++i)
                            std::copy(in + in_count * std::min(i, n - 1), in + in_count * (std::min(i, n - 1) + 1),
                                      batch_in.begin() + in_count * i);
                          engine->backend->infer(batch_in.data(), min_batch, h, w, batch_out.data());
                          std::copy(batch_out.begin(), batch_out.begin() + out_count * n, out);
                        },
                        out_planes.data());
    msn::planes_to_image(out_planes.data(), MSN_PLANE_F32, *output);
    if (input->channels == 4) msn::upscale_alpha(*input, *output);
  });
}

}  // extern "C"
