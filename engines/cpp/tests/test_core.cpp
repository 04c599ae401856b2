// ctest suite for the TensorRT-free core of msn_infer, through the public C ABI.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "half.hpp"
#include "msn/msn_infer.h"
#include "msn/msn_infer.hpp"

namespace {

const std::string kData = MSN_TEST_DATA;

msn_image view(std::vector<uint8_t>& px, int w, int h, int c) { return {px.data(), w, h, c, 0, MSN_PIXEL_U8}; }
msn_image view(std::vector<uint16_t>& px, int w, int h, int c) { return {px.data(), w, h, c, 0, MSN_PIXEL_U16}; }

TEST(Abi, StatusNamesAndVersion) {
  EXPECT_STREQ(msn_status_name(MSN_ERR_IMAGE_TOO_SMALL), "MSN_ERR_IMAGE_TOO_SMALL");
  EXPECT_STREQ(msn_version(), "0.1.0");
}

TEST(Conversion, U8RoundTripsExactlyThroughFloat32AndFloat16) {
  std::vector<uint8_t> px(256 * 3);
  for (int i = 0; i < 256 * 3; ++i) px[i] = static_cast<uint8_t>(i / 3);
  for (msn_plane_type type : {MSN_PLANE_F32, MSN_PLANE_F16}) {
    msn_image in = view(px, 256, 1, 3);
    std::vector<float> planes(3 * 256);
    ASSERT_EQ(msn_image_to_planes(&in, type, planes.data(), planes.size() * 4), MSN_OK) << msn_last_error();
    std::vector<uint8_t> back(px.size());
    msn_image out = view(back, 256, 1, 3);
    ASSERT_EQ(msn_planes_to_image(planes.data(), type, &out), MSN_OK) << msn_last_error();
    EXPECT_EQ(back, px);
  }
}

TEST(Conversion, U16RoundTripsExactlyThroughFloat32) {
  std::vector<uint16_t> px(65536);
  std::iota(px.begin(), px.end(), 0);
  msn_image in = view(px, 65536, 1, 1);
  std::vector<float> planes(3 * 65536);
  ASSERT_EQ(msn_image_to_planes(&in, MSN_PLANE_F32, planes.data(), planes.size() * 4), MSN_OK);
  EXPECT_EQ(planes[65536 + 1234], 1234.0f / 65535.0f);  // gray is replicated to G and B
  std::vector<uint16_t> back(65536);
  msn_image out = view(back, 65536, 1, 1);
  ASSERT_EQ(msn_planes_to_image(planes.data(), MSN_PLANE_F32, &out), MSN_OK);
  EXPECT_EQ(back, px);
}

TEST(Conversion, RgbaKeepsAlphaAndRespectsStride) {
  std::vector<uint8_t> px = {10, 20, 30, 40, 0, 0, 0, 0, 50, 60, 70, 80, 0, 0, 0, 0};  // 1x2 RGBA, 8-byte rows
  msn_image in{px.data(), 1, 2, 4, 8, MSN_PIXEL_U8};
  std::vector<float> planes(6);
  ASSERT_EQ(msn_image_to_planes(&in, MSN_PLANE_F32, planes.data(), 24), MSN_OK);
  EXPECT_EQ(planes[0], 10.0f / 255.0f);
  EXPECT_EQ(planes[1], 50.0f / 255.0f);
  EXPECT_EQ(planes[5], 70.0f / 255.0f);
  std::vector<uint8_t> back = {0, 0, 0, 99, 0, 0, 0, 0, 0, 0, 0, 98, 0, 0, 0, 0};
  msn_image out{back.data(), 1, 2, 4, 8, MSN_PIXEL_U8};
  ASSERT_EQ(msn_planes_to_image(planes.data(), MSN_PLANE_F32, &out), MSN_OK);
  EXPECT_EQ(back, (std::vector<uint8_t>{10, 20, 30, 99, 0, 0, 0, 0, 50, 60, 70, 98, 0, 0, 0, 0}));
}

TEST(Conversion, ClampsAndRoundsHalfToEven) {
  // 0.5/255 and 1.5/255 sit exactly between levels only in exact arithmetic; use values that
  // are exact in float: 127.5 / 255 * 255 = 127.5 -> 128 (even), 0.5 -> 0 (even).
  std::vector<float> planes = {-1.0f, 2.0f, 127.5f / 255.0f, 0.5f / 255.0f, NAN, 1.0f};
  std::vector<uint8_t> px(6);
  msn_image out = view(px, 2, 1, 3);
  ASSERT_EQ(msn_planes_to_image(planes.data(), MSN_PLANE_F32, &out), MSN_OK);
  EXPECT_EQ(px[0], 0);    // R of pixel 0: clamped from -1
  EXPECT_EQ(px[3], 255);  // R of pixel 1: clamped from 2
  EXPECT_EQ(px[1], 128);
  EXPECT_EQ(px[4], 0);
  EXPECT_EQ(px[2], 0);    // NaN quantises to 0, never undefined
}

TEST(Half, KnownValues) {
  EXPECT_EQ(msn::float_to_half(1.0f), 0x3c00);
  EXPECT_EQ(msn::float_to_half(65504.0f), 0x7bff);
  EXPECT_EQ(msn::float_to_half(65520.0f), 0x7c00);  // ties to even -> overflow to inf
  EXPECT_EQ(msn::float_to_half(std::ldexp(1.0f, -24)), 0x0001);
  EXPECT_EQ(msn::float_to_half(std::ldexp(1.0f, -25)), 0x0000);
  EXPECT_EQ(msn::float_to_half(-2.0f), 0xc000);
  EXPECT_TRUE(std::isnan(msn::half_to_float(msn::float_to_half(NAN))));
  for (uint32_t h = 0; h < 0x7c00; ++h) EXPECT_EQ(msn::float_to_half(msn::half_to_float(h)), h);
}

TEST(Errors, NullAndBadArgumentsReturnTheirCodes) {
  float planes[3];
  EXPECT_EQ(msn_image_to_planes(nullptr, MSN_PLANE_F32, planes, 12), MSN_ERR_NULL_ARGUMENT);
  EXPECT_NE(std::string(msn_last_error()).find("image is NULL"), std::string::npos);
  std::vector<uint8_t> px(2);
  msn_image two = view(px, 1, 1, 2);
  EXPECT_EQ(msn_image_to_planes(&two, MSN_PLANE_F32, planes, 12), MSN_ERR_UNSUPPORTED_CHANNELS);
  std::vector<uint8_t> rgb(3);
  msn_image one = view(rgb, 1, 1, 3);
  EXPECT_EQ(msn_image_to_planes(&one, MSN_PLANE_F32, planes, 8), MSN_ERR_BUFFER_TOO_SMALL);
  msn_image no_data{nullptr, 1, 1, 3, 0, MSN_PIXEL_U8};
  EXPECT_EQ(msn_planes_to_image(planes, MSN_PLANE_F32, &no_data), MSN_ERR_NULL_ARGUMENT);
  msn_image short_stride{rgb.data(), 1, 1, 3, 2, MSN_PIXEL_U8};
  EXPECT_EQ(msn_planes_to_image(planes, MSN_PLANE_F32, &short_stride), MSN_ERR_INVALID_ARGUMENT);
}

TEST(Tiling, PlanCoversTheImageAndRejectsBadSettings) {
  int32_t count = 0;
  ASSERT_EQ(msn_tile_plan(100, 140, 64, 16, nullptr, 0, &count), MSN_OK);
  std::vector<msn_tile> tiles(count);
  ASSERT_EQ(msn_tile_plan(100, 140, 64, 16, tiles.data(), count, &count), MSN_OK);
  EXPECT_EQ(count, 2 * 3);  // starts 0, 36 along H; 0, 48, 76 along W
  EXPECT_EQ(tiles.back().y + tiles.back().h, 100);
  EXPECT_EQ(tiles.back().x + tiles.back().w, 140);
  EXPECT_EQ(msn_tile_plan(100, 140, 64, 16, tiles.data(), 2, &count), MSN_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(msn_tile_plan(100, 140, 16, 4, nullptr, 0, &count), MSN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(msn_tile_plan(100, 140, 64, 32, nullptr, 0, &count), MSN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(msn_tile_plan(20, 140, 64, 8, nullptr, 0, &count), MSN_ERR_IMAGE_TOO_SMALL);
}

TEST(Tiling, WeightsCrossFadeToOneOnEvenSteps) {
  int32_t count = 0;
  std::vector<msn_tile> tiles(4);
  ASSERT_EQ(msn_tile_plan(112, 112, 64, 16, tiles.data(), 4, &count), MSN_OK);
  std::vector<float> total(448 * 448, 0.0f), w(256 * 256);
  for (const auto& t : tiles) {
    ASSERT_EQ(msn_tile_weight(112, 112, 16, &t, 4, w.data(), w.size()), MSN_OK);
    for (int y = 0; y < 256; ++y)
      for (int x = 0; x < 256; ++x) total[(t.y * 4 + y) * 448 + t.x * 4 + x] += w[y * 256 + x];
  }
  for (float v : total) ASSERT_NEAR(v, 1.0f, 1e-6f);
  msn_tile outside{100, 0, 64, 64};
  EXPECT_EQ(msn_tile_weight(112, 112, 16, &outside, 4, w.data(), w.size()), MSN_ERR_INVALID_ARGUMENT);
}

// A stand-in network that is exactly translation-equivariant (nearest-neighbour x2), so tiled
// and whole-image results must agree up to the rounding of the blend.
msn_status nearest_x2(void* calls, const float* in, int32_t n, int32_t h, int32_t w, float* out) {
  ++*static_cast<int*>(calls);
  for (int32_t c = 0; c < 3 * n; ++c)
    for (int32_t y = 0; y < 2 * h; ++y)
      for (int32_t x = 0; x < 2 * w; ++x) out[(int64_t{c} * 2 * h + y) * 2 * w + x] = in[(int64_t{c} * h + y / 2) * w + x / 2];
  return MSN_OK;
}

msn_status failing(void*, const float*, int32_t, int32_t, int32_t, float*) { return MSN_ERR_RUNTIME; }

TEST(Upscale, TiledEqualsWholeForAnEquivariantNetwork) {
  const int h = 70, w = 90;
  std::vector<float> in(3 * h * w);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 7919) % 256) / 255.0f;
  std::vector<float> whole(in.size() * 4), tiled(in.size() * 4);
  int calls = 0;
  ASSERT_EQ(msn_upscale_planes(in.data(), h, w, 2, 0, 0, nearest_x2, &calls, whole.data()), MSN_OK);
  EXPECT_EQ(calls, 1);
  ASSERT_EQ(msn_upscale_planes(in.data(), h, w, 2, 40, 10, nearest_x2, &calls, tiled.data()), MSN_OK);
  EXPECT_EQ(calls, 1 + 2 * 3);  // starts 0, 30 along H; 0, 30, 50 along W
  for (size_t i = 0; i < whole.size(); ++i) ASSERT_NEAR(tiled[i], whole[i], 1e-6f);
}

TEST(Upscale, ReportsSmallImagesAndCallbackFailures) {
  std::vector<float> in(3 * 28 * 40), out(in.size() * 4);
  int calls = 0;
  EXPECT_EQ(msn_upscale_planes(in.data(), 28, 40, 2, 0, 0, nearest_x2, &calls, out.data()), MSN_ERR_IMAGE_TOO_SMALL);
  EXPECT_NE(std::string(msn_last_error()).find("at least 29x29"), std::string::npos);
  std::vector<float> ok(3 * 32 * 32), ok_out(ok.size() * 4);
  EXPECT_EQ(msn_upscale_planes(ok.data(), 32, 32, 2, 0, 0, failing, nullptr, ok_out.data()), MSN_ERR_RUNTIME);
  EXPECT_EQ(msn_upscale_planes(ok.data(), 32, 32, 2, 0, 0, nullptr, nullptr, ok_out.data()), MSN_ERR_NULL_ARGUMENT);
}

// A stand-in network whose output is constant per tile (the mean of its input patch), so the
// blended result is exactly the ramp-weighted average of those constants: wrong ramps show.
msn_status tile_mean_x2(void*, const float* in, int32_t n, int32_t h, int32_t w, float* out) {
  for (int32_t c = 0; c < 3 * n; ++c) {
    double sum = 0;
    for (int64_t i = 0; i < int64_t{h} * w; ++i) sum += in[int64_t{c} * h * w + i];
    std::fill(out + int64_t{c} * 4 * h * w, out + int64_t{c + 1} * 4 * h * w, static_cast<float>(sum / (h * w)));
  }
  return MSN_OK;
}

// The ramp rule written out independently of tiling.cpp: weight (i + 0.5) / r near a shared edge.
double ramp_weight(int i, int length, int r, bool rise_start, bool rise_end) {
  double weight = 1.0;
  if (rise_start && i < r) weight = std::min(weight, (i + 0.5) / r);
  if (rise_end && i >= length - r) weight = std::min(weight, (length - i - 0.5) / r);
  return weight;
}

TEST(Upscale, BlendIsTheRampWeightedAverageOfTiles) {
  const int h = 70, w = 90, tile = 40, overlap = 10, s = 2;
  std::vector<float> in(3 * h * w), out(in.size() * s * s);
  for (size_t i = 0; i < in.size(); ++i) in[i] = static_cast<float>((i * 7919) % 256) / 255.0f;
  ASSERT_EQ(msn_upscale_planes(in.data(), h, w, s, tile, overlap, tile_mean_x2, nullptr, out.data()), MSN_OK);
  // Tile starts by the rule: stride tile - overlap, the last one clamped to the border.
  const std::vector<int> ys = {0, 30}, xs = {0, 30, 50};
  std::vector<double> num(out.size(), 0.0), den(size_t(h * s) * w * s, 0.0);
  for (int ty : ys)
    for (int tx : xs)
      for (int c = 0; c < 3; ++c) {
        double mean = 0;
        for (int y = 0; y < tile; ++y)
          for (int x = 0; x < tile; ++x) mean += in[(size_t(c) * h + ty + y) * w + tx + x];
        mean /= tile * tile;
        for (int y = 0; y < tile * s; ++y)
          for (int x = 0; x < tile * s; ++x) {
            const double wt = ramp_weight(y, tile * s, overlap * s, ty > 0, ty + tile < h) *
                              ramp_weight(x, tile * s, overlap * s, tx > 0, tx + tile < w);
            const size_t p = size_t(ty * s + y) * w * s + tx * s + x;
            num[size_t(c) * h * s * w * s + p] += wt * static_cast<float>(mean);
            if (c == 0) den[p] += wt;
          }
      }
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], num[i] / den[i % den.size()], 2e-6) << i;
}

msn_status nan_x2(void*, const float*, int32_t n, int32_t h, int32_t w, float* out) {
  std::fill(out, out + int64_t{3} * n * 4 * h * w, 0.5f);
  out[7] = std::nanf("");
  return MSN_OK;
}

TEST(Upscale, RejectsNonFiniteOutputAndBadTileSettings) {
  std::vector<float> in(3 * 64 * 64, 0.5f), out(in.size() * 4);
  EXPECT_EQ(msn_upscale_planes(in.data(), 64, 64, 2, 0, 0, nan_x2, nullptr, out.data()), MSN_ERR_RUNTIME);
  EXPECT_NE(std::string(msn_last_error()).find("NaN or Inf"), std::string::npos);
  EXPECT_EQ(msn_upscale_planes(in.data(), 64, 64, 2, 32, 8, nan_x2, nullptr, out.data()), MSN_ERR_RUNTIME);
  int calls = 0;
  EXPECT_EQ(msn_upscale_planes(in.data(), 64, 64, 2, -5, 0, nearest_x2, &calls, out.data()), MSN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(msn_upscale_planes(in.data(), 64, 64, 2, 10, 0, nearest_x2, &calls, out.data()), MSN_ERR_INVALID_ARGUMENT);
  // An overlap of half a tile or more is refused, not silently clamped.
  EXPECT_EQ(msn_upscale_planes(in.data(), 64, 64, 2, 40, 20, nearest_x2, &calls, out.data()), MSN_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(calls, 0);
}

class Sidecar : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(msn_sidecar_load((kData + "/sidecar_rtx.json").c_str(), &sidecar_), MSN_OK) << msn_last_error(); }
  void TearDown() override { msn_sidecar_destroy(sidecar_); }
  msn_sidecar* sidecar_ = nullptr;
};

TEST_F(Sidecar, FieldsAreRead) {
  EXPECT_EQ(msn_sidecar_scale(sidecar_), 4);
  int32_t lo[3], opt[3], hi[3];
  ASSERT_EQ(msn_sidecar_profile(sidecar_, lo, opt, hi), MSN_OK);
  EXPECT_EQ(lo[1], 29);
  EXPECT_EQ(opt[2], 128);
  EXPECT_EQ(hi[0], 1);
  EXPECT_EQ(hi[2], 256);
}

TEST_F(Sidecar, CompatibilityRules) {
  EXPECT_EQ(msn_sidecar_check(sidecar_, "tensorrt_rtx", "1.7.1.116", "SM89"), MSN_OK);
  EXPECT_EQ(msn_sidecar_check(sidecar_, "tensorrt_rtx", "1.7.1", "SM86"), MSN_OK);  // headers carry no build number
  EXPECT_EQ(msn_sidecar_check(sidecar_, "tensorrt_rtx", "1.8.0.12", "SM89"), MSN_ERR_ENGINE_MISMATCH);
  EXPECT_NE(std::string(msn_last_error()).find("rebuild with: python export/build_trt.py --onnx msn_x4_fp16.onnx"),
            std::string::npos);
  EXPECT_EQ(msn_sidecar_check(sidecar_, "tensorrt", "10.9.0", "SM89"), MSN_ERR_ENGINE_MISMATCH);
  EXPECT_EQ(msn_sidecar_check(sidecar_, "tensorrt_rtx", "1.7.1.116", "SM90"), MSN_ERR_ENGINE_MISMATCH);
  EXPECT_NE(std::string(msn_last_error()).find("targets [SM86, SM89] but this GPU is SM90"), std::string::npos);
  EXPECT_EQ(msn_sidecar_check(sidecar_, "tensorrt_rtx", "1.7.1.116", nullptr), MSN_ERR_ENGINE_MISMATCH);
  EXPECT_NE(std::string(msn_last_error()).find("need an NVIDIA GPU"), std::string::npos);
}

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(SidecarErrors, MissingMalformedAndForeignFilesAreRejected) {
  msn_sidecar* s = nullptr;
  EXPECT_EQ(msn_sidecar_load("/nonexistent/engine.plan.json", &s), MSN_ERR_IO);
  EXPECT_EQ(msn_sidecar_load(write_temp("bad.json", "{not json").c_str(), &s), MSN_ERR_SIDECAR_INVALID);
  EXPECT_EQ(msn_sidecar_load(write_temp("foreign.json", R"({"format": "other/1"})").c_str(), &s), MSN_ERR_SIDECAR_INVALID);
  EXPECT_EQ(msn_sidecar_load(write_temp("partial.json", R"({"format": "msn-engine/1", "scale": 4})").c_str(), &s),
            MSN_ERR_SIDECAR_INVALID);
  EXPECT_NE(std::string(msn_last_error()).find("missing a field"), std::string::npos);
  EXPECT_EQ(msn_sidecar_load(::testing::TempDir().c_str(), &s), MSN_ERR_IO);  // a directory
  EXPECT_NE(std::string(msn_last_error()).find("is not a file"), std::string::npos);
  // A binary file: the parser quotes what it read; the message must stay printable ASCII.
  EXPECT_EQ(msn_sidecar_load(write_temp("binary.json", std::string("\x89PNG\r\n\x1a\n\xff\xfe", 10)).c_str(), &s),
            MSN_ERR_SIDECAR_INVALID);
  for (const unsigned char c : std::string(msn_last_error())) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << int(c);
  EXPECT_EQ(s, nullptr);
}

TEST(Engine, CreationErrors) {
  msn_engine* engine = nullptr;
  EXPECT_EQ(msn_engine_create("model.tflite", &engine), MSN_ERR_INVALID_ARGUMENT);
  if (!(msn_available_backends() & MSN_BACKEND_OPENVINO)) {
    EXPECT_EQ(msn_engine_create("model.onnx", &engine), MSN_ERR_BACKEND_UNAVAILABLE);
    EXPECT_NE(std::string(msn_last_error()).find("no OpenVINO backend"), std::string::npos);
  }
  EXPECT_EQ(msn_engine_create(nullptr, &engine), MSN_ERR_NULL_ARGUMENT);
  if (!(msn_available_backends() & MSN_BACKEND_TENSORRT)) {
    EXPECT_EQ(msn_engine_create("engine.plan", &engine), MSN_ERR_BACKEND_UNAVAILABLE);
    EXPECT_NE(std::string(msn_last_error()).find("no TensorRT backend"), std::string::npos);
    try {
      msn::Engine wrapped("engine.plan");
      FAIL() << "expected msn::Exception";
    } catch (const msn::Exception& e) {
      EXPECT_EQ(e.status(), MSN_ERR_BACKEND_UNAVAILABLE);
    }
  }
  EXPECT_EQ(engine, nullptr);
}

}  // namespace
