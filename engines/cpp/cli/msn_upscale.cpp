// msn_upscale: PNG in, PNG out, through whichever backend this build of msn_infer has.
//   msn_upscale MODEL IN.png OUT.png [--tile N] [--overlap N] [--max-pixels N]
//   (MODEL: a .plan with its sidecar, or an .onnx graph)
#include <png.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <climits>
#include <csetjmp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>
#include <system_error>
#include <vector>

#include "msn/msn_infer.hpp"

namespace {

constexpr const char* kUsage =
    "usage: msn_upscale MODEL(.plan|.onnx) IN.png OUT.png [--tile N] [--overlap N] [--max-pixels N]\n"
    "  --tile N        tile size in LR px: 0 = whole image (default), else at least 29\n"
    "  --overlap N     tile overlap in LR px, less than half a tile (default 32)\n"
    "  --max-pixels N  largest input, width x height, checked from the PNG header (default 268435456)\n";

// The Python side's default too (engines.images.MAX_PIXELS): 16384 x 16384.
constexpr long long kDefaultMaxPixels = 1LL << 28;

struct Png {
  msn::Image<uint8_t> u8;
  msn::Image<uint16_t> u16;
  bool sixteen = false;
};

// Closes the FILE and frees libpng state however the function is left.
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

struct PngLayout {
  int width = 0, height = 0, channels = 0, depth = 0;
};

// libpng reports errors by longjmp. The functions that call it hold no C++ objects with
// destructors between setjmp and the libpng calls, so a longjmp out of libpng skips none.
bool read_layout(png_structp png, png_infop info, FILE* file, PngLayout* layout) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, file);
  png_read_info(png, info);
  const int depth = png_get_bit_depth(png, info), color = png_get_color_type(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (png_get_valid(png, info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(png);
  if (depth == 16) png_set_swap(png);  // PNG is big-endian; give native uint16 on little-endian hosts
  png_read_update_info(png, info);
  layout->channels = png_get_channels(png, info);
  layout->width = static_cast<int>(png_get_image_width(png, info));
  layout->height = static_cast<int>(png_get_image_height(png, info));
  layout->depth = depth == 16 ? 16 : 8;
  return true;
}

bool read_rows(png_structp png, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, nullptr);
  return true;
}

bool write_rows(png_structp png, png_infop info, FILE* file, const PngLayout* layout, int color, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_init_io(png, file);
  png_set_IHDR(png, info, layout->width, layout->height, layout->depth, color, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  if (layout->depth == 16) png_set_swap(png);
  png_write_image(png, rows);
  png_write_end(png, nullptr);
  return true;
}

// The classic libpng API, raw samples: no gamma conversion, no alpha premultiplication.
Png read_png(const std::string& path, long long max_pixels) {
  PngFile f;
  f.file = std::fopen(path.c_str(), "rb");
  if (!f.file) throw std::runtime_error(path + ": cannot open (" + std::strerror(errno) + ")");
  f.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  f.info = f.png ? png_create_info_struct(f.png) : nullptr;
  if (!f.png || !f.info) throw std::runtime_error("libpng: out of memory");
  PngLayout layout;
  if (!read_layout(f.png, f.info, f.file, &layout)) throw std::runtime_error(path + ": not a readable PNG");
  const long long pixels = static_cast<long long>(layout.width) * layout.height;
  if (pixels > max_pixels)  // before a single row is allocated
    throw std::runtime_error(path + " is " + std::to_string(layout.width) + "x" + std::to_string(layout.height) +
                             " = " + std::to_string(pixels) + " pixels; the limit is " +
                             std::to_string(max_pixels) + "; raise --max-pixels if you mean it");
  Png out;
  out.sixteen = layout.depth == 16;
  std::vector<png_bytep> rows(layout.height);
  const size_t row_samples = size_t(layout.width) * layout.channels;
  if (out.sixteen) {
    out.u16 = msn::Image<uint16_t>(layout.width, layout.height, layout.channels);
    for (int y = 0; y < layout.height; ++y) rows[y] = reinterpret_cast<png_bytep>(&out.u16.pixels[y * row_samples]);
  } else {
    out.u8 = msn::Image<uint8_t>(layout.width, layout.height, layout.channels);
    for (int y = 0; y < layout.height; ++y) rows[y] = &out.u8.pixels[y * row_samples];
  }
  if (!read_rows(f.png, rows.data())) throw std::runtime_error(path + ": truncated or corrupt PNG data");
  return out;
}

template <class Pixel>
void write_png(const std::string& path, msn::Image<Pixel>& img) {
  // Atomic: write a temporary file of a unique name beside the target, then rename it. A fixed
  // name such as OUT.png.tmp could be a file of the user's, which would be replaced.
  const std::filesystem::path target = std::filesystem::absolute(path);
  std::string pattern = (target.parent_path() / ("." + target.filename().string() + ".XXXXXX")).string();
  const int fd = mkstemp(pattern.data());
  if (fd < 0)
    throw std::runtime_error(path + ": cannot create a temporary file beside it (" + std::strerror(errno) + ")");
  const std::string tmp = pattern;
  bool written = false;
  {
    PngFile f;
    f.writing = true;
    f.file = fdopen(fd, "wb");
    if (!f.file) {
      ::close(fd);
      std::error_code ec;
      std::filesystem::remove(tmp, ec);
      throw std::runtime_error(tmp + ": cannot open (" + std::strerror(errno) + ")");
    }
    f.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
    f.info = f.png ? png_create_info_struct(f.png) : nullptr;
    if (f.png && f.info) {
      static const int kColor[] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA, PNG_COLOR_TYPE_RGB,
                                   PNG_COLOR_TYPE_RGB_ALPHA};
      const PngLayout layout{img.width, img.height, img.channels, int(sizeof(Pixel)) * 8};
      std::vector<png_bytep> rows(img.height);
      for (int y = 0; y < img.height; ++y)
        rows[y] = reinterpret_cast<png_bytep>(&img.pixels[size_t(y) * img.width * img.channels]);
      written = write_rows(f.png, f.info, f.file, &layout, kColor[img.channels], rows.data());
    }
    written = written && std::fflush(f.file) == 0;
  }
  std::error_code ec;
  if (!written) {
    std::filesystem::remove(tmp, ec);
    throw std::runtime_error(path + ": write failed");
  }
  std::filesystem::permissions(tmp, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write |
                                         std::filesystem::perms::group_read | std::filesystem::perms::others_read,
                               ec);  // mkstemp makes 0600; outputs get the usual 0644
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::error_code ignored;
    std::filesystem::remove(tmp, ignored);
    throw std::runtime_error(path + ": cannot rename the output into place (" + ec.message() + ")");
  }
}

bool ends_with_png(const std::string& name) {
  if (name.size() < 4) return false;
  std::string suffix = name.substr(name.size() - 4);
  for (char& c : suffix) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return suffix == ".png";
}

bool parse_count(const char* text, long long max, long long* value) {
  char* end = nullptr;
  errno = 0;
  const long long v = std::strtoll(text, &end, 10);
  if (errno || end == text || *end != '\0' || v < 0 || v > max) return false;
  *value = v;
  return true;
}

int fail_usage(const std::string& message) {
  std::cerr << "msn_upscale: " << message << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::cout << kUsage;
      return 0;
    }
  }
  if (argc < 4) return fail_usage("expected MODEL, IN.png and OUT.png");
  const std::string engine_path = argv[1], in_path = argv[2], out_path = argv[3];
  long long tile_value = 0, overlap_value = 32, max_pixels = kDefaultMaxPixels;
  for (int i = 4; i < argc; ++i) {
    const std::string option = argv[i];
    if (option != "--tile" && option != "--overlap" && option != "--max-pixels")
      return fail_usage("unknown argument '" + option + "'");
    if (i + 1 >= argc) return fail_usage(option + " needs a value");
    long long* target = option == "--tile" ? &tile_value : option == "--overlap" ? &overlap_value : &max_pixels;
    if (!parse_count(argv[++i], option == "--max-pixels" ? LLONG_MAX : INT_MAX, target))
      return fail_usage(option + " expects a whole number of pixels >= 0, got '" + argv[i] + "'");
  }
  const int tile = static_cast<int>(tile_value), overlap = static_cast<int>(overlap_value);
  // The same rules as the Python CLI, checked before anything is loaded.
  if (tile > 0 && tile < MSN_MIN_INPUT_SIZE)
    return fail_usage("--tile " + std::to_string(tile) + " is below MSN's minimum input of 29 px (0 = whole image)");
  if (tile > 0 && overlap >= tile / 2)
    return fail_usage("--overlap " + std::to_string(overlap) + " must be less than half the tile (" +
                      std::to_string(tile / 2) + ")");
  if (!ends_with_png(out_path))
    return fail_usage("output " + out_path + " must end in .png (PNG is what this tool writes)");
  std::error_code ec;
  if (std::filesystem::is_directory(out_path, ec))
    return fail_usage("output " + out_path + " is a directory; give a file name ending in .png");
  if (std::filesystem::exists(out_path, ec) && std::filesystem::equivalent(in_path, out_path, ec)) {
    std::cerr << "msn_upscale: output would overwrite the input\n";
    return 2;
  }
  const std::filesystem::path out_dir = std::filesystem::absolute(out_path).parent_path();
  if (!std::filesystem::is_directory(out_dir, ec)) {
    std::cerr << "msn_upscale: output folder " << out_dir << " does not exist\n";
    return 2;
  }
  if (!std::filesystem::is_regular_file(engine_path, ec))
    return fail_usage("model " + engine_path + " does not exist (or is not a file)");
  try {
    Png png = read_png(in_path, max_pixels);
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
