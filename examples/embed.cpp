// Embedding an MSN engine in a C++ application (link against msn_infer).
//   cmake --build build && ./build/examples/msn_embed_example engine.plan
#include <cstdio>

#include "msn/msn_infer.hpp"

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s ENGINE.plan\n", argv[0]);
    return 2;
  }
  try {
    msn::Engine engine(argv[1]);                      // checks the sidecar against this TensorRT and GPU
    msn::Image<uint8_t> frame(640, 360, 3);           // your decoded RGB frame (HWC, 8-bit)
    msn::Image<uint8_t> sr = engine.upscale(frame);   // 2560x1440, tiled if beyond the profile
    std::printf("upscaled to %dx%d\n", sr.width, sr.height);
  } catch (const msn::Exception& e) {                 // e.status() says which kind of failure
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  return 0;
}
