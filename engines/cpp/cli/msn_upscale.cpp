// msn_upscale: PNG in, PNG out, through whichever backend this build of msn_infer has.
//   msn_upscale MODEL IN.png OUT.png [--tile N] [--overlap N]     (MODEL: .plan with sidecar, or .onnx)
#include <png.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <vector>

#include "msn/msn_infer.hpp"

namespace {

struct Png {
  msn::Image<uint8_t> u8;
  msn::Image<uint16_t> u16;
  bool sixteen = false;
};

// Closes the FILE and frees libpng state however the function is left (libpng reports errors by longjmp).
struct PngFile {
  FILE* file = nullptr;
  png_structp png = nullptr;
  png_infop info = nullptr;
  bool writing = false;
  ~PngFile() {
    if (writing) png_destroy_write_struct(&png, &info);
    else png_destroy_read_struct(&png, &info, nullptr);
    if (file) std::fclose(file);
  }
};

// The classic libpng API, raw samples: no gamma conversion, no alpha premultiplication.
Png read_png(const std::string& path) {
  PngFile f;
  f.file = std::fopen(path.c_str(), "rb");
  if (!f.file) throw std::runtime_error(path + ": cannot open");
  f.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  f.info = png_create_info_struct(f.png);
  if (!f.png || !f.info) throw std::runtime_error("libpng: out of memory");
  if (setjmp(png_jmpbuf(f.png))) throw std::runtime_error(path + ": not a readable PNG");
  png_init_io(f.png, f.file);
  png_read_info(f.png, f.info);
  const int depth = png_get_bit_depth(f.png, f.info), color = png_get_color_type(f.png, f.info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(f.png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(f.png);
  if (png_get_valid(f.png, f.info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(f.png);
  if (depth == 16) png_set_swap(f.png);  // PNG is big-endian; give native uint16 on little-endian hosts
  png_read_update_info(f.png, f.info);
  const int channels = png_get_channels(f.png, f.info);
  const int width = png_get_image_width(f.png, f.info), height = png_get_image_height(f.png, f.info);
  Png out;
  out.sixteen = depth == 16;
  std::vector<png_bytep> rows(height);
  if (out.sixteen) {
    out.u16 = msn::Image<uint16_t>(width, height, channels);
    for (int y = 0; y < height; ++y) rows[y] = reinterpret_cast<png_bytep>(&out.u16.pixels[size_t(y) * width * channels]);
  } else {
    out.u8 = msn::Image<uint8_t>(width, height, channels);
    for (int y = 0; y < height; ++y) rows[y] = &out.u8.pixels[size_t(y) * width * channels];
  }
  png_read_image(f.png, rows.data());
  return out;
}

template <class Pixel>
void write_png(const std::string& path, msn::Image<Pixel>& img) {
  const std::string tmp = path + ".tmp";  // atomic: write beside the target, then rename
  {
    PngFile f;
    f.writing = true;
    f.file = std::fopen(tmp.c_str(), "wb");
    if (!f.file) throw std::runtime_error(tmp + ": cannot create");
    f.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    f.info = png_create_info_struct(f.png);
    if (!f.png || !f.info) throw std::runtime_error("libpng: out of memory");
    if (setjmp(png_jmpbuf(f.png))) throw std::runtime_error(tmp + ": write failed");
    png_init_io(f.png, f.file);
    static const int kColor[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
    png_set_IHDR(f.png, f.info, img.width, img.height, sizeof(Pixel) * 8, kColor[img.channels], PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(f.png, f.info);
    if (sizeof(Pixel) == 2) png_set_swap(f.png);
    std::vector<png_bytep> rows(img.height);
    for (int y = 0; y < img.height; ++y)
      rows[y] = reinterpret_cast<png_bytep>(&img.pixels[size_t(y) * img.width * img.channels]);
    png_write_image(f.png, rows.data());
    png_write_end(f.png, nullptr);
  }
  std::filesystem::rename(tmp, path);
}

int usage() {
  std::cerr << "usage: msn_upscale MODEL(.plan|.onnx) IN.png OUT.png [--tile N] [--overlap N]\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) return usage();
  const std::string engine_path = argv[1], in_path = argv[2], out_path = argv[3];
  int tile = 0, overlap = 32;
  for (int i = 4; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--tile")) tile = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--overlap")) overlap = std::atoi(argv[i + 1]);
    else return usage();
  }
  try {
    if (std::filesystem::exists(out_path) && std::filesystem::equivalent(in_path, out_path)) {
      std::cerr << "msn_upscale: output would overwrite the input\n";
      return 2;
    }
    Png png = read_png(in_path);
    msn::Engine engine(engine_path);
    if (png.sixteen) {
      auto out = engine.upscale(png.u16, tile, overlap);
      write_png(out_path, out);
    } else {
      auto out = engine.upscale(png.u8, tile, overlap);
      write_png(out_path, out);
    }
  } catch (const std::exception& e) {
    std::cerr << "msn_upscale: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
