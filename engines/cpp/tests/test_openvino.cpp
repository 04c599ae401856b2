// libmsn_infer's OpenVINO backend end to end, against the Python runtime's output for the same
// graph and input (written by tests/cpp/cpp_fixtures.py into MSN_FIXTURES before this test runs).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "msn/msn_infer.hpp"

namespace {

const std::string kFixtures = MSN_FIXTURES;

struct Case {
  std::string name;
  int height, width, channels, tile, overlap;
};

std::vector<Case> read_cases() {
  std::ifstream in(kFixtures + "/cases.txt");
  std::vector<Case> cases;
  Case c;
  while (in >> c.name >> c.height >> c.width >> c.channels >> c.tile >> c.overlap) cases.push_back(c);
  return cases;
}

std::vector<uint16_t> read_u16(const std::string& path, size_t count) {
  std::ifstream in(path, std::ios::binary);
  std::vector<uint16_t> data(count);
  in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(count * 2));
  EXPECT_EQ(static_cast<size_t>(in.gcount()), count * 2) << path;
  return data;
}

TEST(OpenVINO, UpscaleMatchesPythonRuntime) {
  const auto cases = read_cases();
  ASSERT_EQ(cases.size(), 2u) << "fixtures missing in " << kFixtures;
  msn::Engine engine(kFixtures + "/msn_random.onnx");
  ASSERT_EQ(engine.scale(), 4);
  for (const Case& c : cases) {
    msn::Image<uint16_t> input(c.width, c.height, c.channels);
    input.pixels = read_u16(kFixtures + "/" + c.name + "_in.u16", input.pixels.size());
    const msn::Image<uint16_t> out = engine.upscale(input, c.tile, c.overlap);
    const auto expected = read_u16(kFixtures + "/" + c.name + "_expected.u16", out.pixels.size());
    int worst = 0;
    size_t differing = 0;
    for (size_t i = 0; i < expected.size(); ++i) {
      const int d = std::abs(int(out.pixels[i]) - int(expected[i]));
      worst = std::max(worst, d);
      differing += d != 0;
    }
    // Same graph, same runtime, same tiling rule: only float rounding at a quantisation edge
    // may differ (one 16-bit level), and only at a few pixels.
    EXPECT_LE(worst, 1) << c.name;
    EXPECT_LT(differing, expected.size() / 100) << c.name;
  }
}

TEST(OpenVINO, StaticBatchGraphRunsOneImagePadded) {
  const Case c = read_cases().at(0);  // the b2 graph is fixed to this case's size, batch 2
  msn::Engine engine(kFixtures + "/msn_random_b2.onnx");
  msn::Image<uint16_t> input(c.width, c.height, c.channels);
  input.pixels = read_u16(kFixtures + "/" + c.name + "_in.u16", input.pixels.size());
  const msn::Image<uint16_t> out = engine.upscale(input, 0, c.overlap);
  const auto expected = read_u16(kFixtures + "/" + c.name + "_expected.u16", out.pixels.size());
  int worst = 0;
  for (size_t i = 0; i < expected.size(); ++i) worst = std::max(worst, std::abs(int(out.pixels[i]) - int(expected[i])));
  EXPECT_LE(worst, 1);
}

TEST(OpenVINO, CAbiLifecycleAndErrors) {
  msn_engine* engine = nullptr;
  ASSERT_EQ(msn_engine_create((kFixtures + "/msn_random.onnx").c_str(), &engine), MSN_OK) << msn_last_error();
  EXPECT_EQ(msn_engine_scale(engine), 4);
  std::vector<uint8_t> small(20 * 20 * 3, 128), out(80 * 80 * 3);
  msn_image in_img{small.data(), 20, 20, 3, 0, MSN_PIXEL_U8};
  msn_image out_img{out.data(), 80, 80, 3, 0, MSN_PIXEL_U8};
  EXPECT_EQ(msn_engine_upscale(engine, &in_img, &out_img, 0, 32), MSN_ERR_IMAGE_TOO_SMALL);
  msn_engine_destroy(engine);

  EXPECT_EQ(msn_engine_create((kFixtures + "/cases.txt.onnx").c_str(), &engine), MSN_ERR_IO);
  EXPECT_NE(std::string(msn_last_error()).find("cases.txt.onnx does not exist"), std::string::npos) << msn_last_error();
  EXPECT_EQ(engine, nullptr);
  EXPECT_EQ(msn_engine_create((kFixtures + "/not_a_graph.onnx").c_str(), &engine), MSN_ERR_IO);
  EXPECT_NE(std::string(msn_last_error()).find("OpenVINO cannot read"), std::string::npos) << msn_last_error();
  EXPECT_EQ(engine, nullptr);
}

}  // namespace
