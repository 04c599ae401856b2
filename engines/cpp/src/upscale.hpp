// Whole-image or tiled upscaling of float planes, with any runtime behind a callback.
#pragma once

#include <cstdint>
#include <functional>

namespace msn {

// input: n x 3 x h x w; output: n x 3 x (h*scale) x (w*scale)
using InferFn = std::function<void(const float* input, int32_t n, int32_t h, int32_t w, float* output)>;

// input 3 x H x W -> output 3 x (H*scale) x (W*scale). tile <= 0 or tile >= both sides: one call.
void upscale_planes(const float* input, int32_t height, int32_t width, int32_t scale, int32_t tile,
                    int32_t overlap, const InferFn& infer, float* output);

}  // namespace msn
