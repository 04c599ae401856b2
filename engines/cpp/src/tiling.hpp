// The tiling rule shared with engines/tiling.py (see that file's docstring for the rationale).
#pragma once

#include <cstdint>
#include <vector>

#include "msn/msn_infer.h"

namespace msn {

std::vector<int32_t> axis_starts(int32_t length, int32_t tile, int32_t overlap);
// Validates sizes (MSN_ERR_*), then returns the tiles row-major.
std::vector<msn_tile> plan_tiles(int32_t height, int32_t width, int32_t tile, int32_t overlap);
std::vector<float> ramp(int32_t length, int32_t ramp_len, bool rise_start, bool rise_end);
std::vector<float> tile_weight(int32_t height, int32_t width, int32_t overlap, const msn_tile& tile, int32_t scale);

}  // namespace msn
