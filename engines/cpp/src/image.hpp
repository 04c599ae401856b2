#pragma once

#include <cstddef>
#include <cstdint>

#include "msn/msn_infer.h"

namespace msn {

void check_image(const msn_image* img, const char* name);  // throws Error with the exact problem
size_t plane_bytes(int32_t height, int32_t width, msn_plane_type type);
void image_to_planes(const msn_image& img, msn_plane_type type, void* planes);
void planes_to_image(const void* planes, msn_plane_type type, msn_image& img);
// Alpha is not what MSN was trained on: RGBA outputs get the input's alpha resized bilinearly
// (half-pixel centres). The Python runtime resizes it bicubically with OpenCV.
void upscale_alpha(const msn_image& src, msn_image& dst);

}  // namespace msn
