/* msn_infer: embed MSN x4 super-resolution engines in C, C++ or any language with a C FFI.
 *
 * Conventions
 *   - Every function returns an msn_status; on failure msn_last_error() gives a message for the
 *     calling thread (valid until that thread's next call into the library).
 *   - Opaque handles are created by *_create / *_load and released by the matching *_destroy.
 *     The caller owns every buffer it passes; the library never keeps a pointer after returning.
 *   - Sizes are in pixels. "LR" = the low-resolution input, "SR" = the upscaled output.
 *   - Planes are NCHW, RGB, float values in [0, 1] (input) or unclamped (network output).
 *   - Tiling follows one rule shared with the Python runtime (engines/tiling.py).
 */
#ifndef MSN_INFER_H
#define MSN_INFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define MSN_API __declspec(dllexport)
#else
#define MSN_API __attribute__((visibility("default")))
#endif

#define MSN_MIN_INPUT_SIZE 29

typedef enum msn_status {
  MSN_OK = 0,
  MSN_ERR_NULL_ARGUMENT = 1,      /* a required pointer was NULL */
  MSN_ERR_INVALID_ARGUMENT = 2,   /* a size, count or option is out of range */
  MSN_ERR_IMAGE_TOO_SMALL = 3,    /* height or width below MSN_MIN_INPUT_SIZE */
  MSN_ERR_UNSUPPORTED_CHANNELS = 4, /* not 1 (gray), 3 (RGB) or 4 (RGBA) channels */
  MSN_ERR_BUFFER_TOO_SMALL = 5,   /* an output buffer cannot hold the result */
  MSN_ERR_IO = 6,                 /* a file could not be read or written */
  MSN_ERR_SIDECAR_INVALID = 7,    /* the engine's JSON sidecar is missing, malformed or foreign */
  MSN_ERR_ENGINE_MISMATCH = 8,    /* engine built for another TensorRT version or GPU: rebuild it */
  MSN_ERR_BACKEND_UNAVAILABLE = 9, /* this build has no backend for the artifact */
  MSN_ERR_OUTSIDE_PROFILE = 10,   /* shape outside the engine's profile and not tileable to fit */
  MSN_ERR_RUNTIME = 11,           /* the backend failed while running */
  MSN_ERR_INTERNAL = 12           /* a bug: please report it with msn_last_error() */
} msn_status;

typedef enum msn_pixel_type { MSN_PIXEL_U8 = 0, MSN_PIXEL_U16 = 1 } msn_pixel_type;
typedef enum msn_plane_type { MSN_PLANE_F32 = 0, MSN_PLANE_F16 = 1 } msn_plane_type;

enum { MSN_BACKEND_TENSORRT = 1, MSN_BACKEND_OPENVINO = 4 };

/* An interleaved (HWC) image. stride_bytes = bytes between rows; 0 means tightly packed. */
typedef struct msn_image {
  void* data;
  int32_t width;
  int32_t height;
  int32_t channels; /* 1 gray, 3 RGB, 4 RGBA */
  int64_t stride_bytes;
  msn_pixel_type type;
} msn_image;

/* One tile of a plan, in LR pixels. */
typedef struct msn_tile {
  int32_t y, x, h, w;
} msn_tile;

MSN_API const char* msn_version(void);
MSN_API const char* msn_last_error(void);
MSN_API const char* msn_status_name(msn_status status);
/* Bitmask of MSN_BACKEND_* compiled into this build. */
MSN_API int32_t msn_available_backends(void);

/* ---- conversions ------------------------------------------------------------------------ */
/* Image -> 3 x H x W planes in [0, 1]: gray is replicated to RGB, alpha is ignored.
 * planes_bytes must be at least 3*H*W*sizeof(element). */
MSN_API msn_status msn_image_to_planes(const msn_image* image, msn_plane_type type, void* planes,
                                       size_t planes_bytes);
/* 3 x H x W planes -> image of the same H, W: clamped to [0, 1], scaled, rounded half to even.
 * Gray images get the mean of R, G, B; the alpha channel of an RGBA image is left untouched. */
MSN_API msn_status msn_planes_to_image(const void* planes, msn_plane_type type, msn_image* image);

/* ---- tiling ----------------------------------------------------------------------------- */
/* Tiles of `tile` LR px overlapping by `overlap` (0 <= overlap < tile/2), row-major. Writes up
 * to `capacity` tiles; *count receives the number the plan needs (call with capacity 0 to ask). */
MSN_API msn_status msn_tile_plan(int32_t height, int32_t width, int32_t tile, int32_t overlap,
                                 msn_tile* tiles, int32_t capacity, int32_t* count);
/* Blend weights of one tile of that plan: (tile.h*scale) x (tile.w*scale) floats. */
MSN_API msn_status msn_tile_weight(int32_t height, int32_t width, int32_t overlap, const msn_tile* tile,
                                   int32_t scale, float* weights, size_t count);

/* ---- bring your own runtime ------------------------------------------------------------- */
/* Run the network on input (n x 3 x h x w, float32) into output (n x 3 x h*scale x w*scale). */
typedef msn_status (*msn_infer_fn)(void* user, const float* input, int32_t n, int32_t h, int32_t w,
                                   float* output);
/* Upscale 3 x H x W float planes into 3 x (H*scale) x (W*scale), tiled when tile > 0 and the
 * image is larger than the tile, by calling `infer` per tile (or once for the whole image). */
MSN_API msn_status msn_upscale_planes(const float* input, int32_t height, int32_t width, int32_t scale,
                                      int32_t tile, int32_t overlap, msn_infer_fn infer, void* user,
                                      float* output);

/* ---- engine sidecars (written by export/build_trt.py through export/artifacts.py) ---------------------------------- */
typedef struct msn_sidecar msn_sidecar;
MSN_API msn_status msn_sidecar_load(const char* json_path, msn_sidecar** out);
MSN_API void msn_sidecar_destroy(msn_sidecar* sidecar);
MSN_API int32_t msn_sidecar_scale(const msn_sidecar* sidecar);
/* Profile as N, H, W triples (LR px). */
MSN_API msn_status msn_sidecar_profile(const msn_sidecar* sidecar, int32_t min[3], int32_t opt[3],
                                       int32_t max[3]);
/* The input and output tensors' dtypes, "float32" or "float16"; the strings live as long as the sidecar. */
MSN_API msn_status msn_sidecar_io_dtypes(const msn_sidecar* sidecar, const char** input_dtype,
                                         const char** output_dtype);
/* MSN_OK if an engine with this sidecar can run under TensorRT `flavour` ("tensorrt" or
 * "tensorrt_rtx") `version` on a GPU of `compute_capability` ("SM89"); else
 * MSN_ERR_ENGINE_MISMATCH with the rebuild command in msn_last_error(). */
MSN_API msn_status msn_sidecar_check(const msn_sidecar* sidecar, const char* flavour, const char* version,
                                     const char* compute_capability);

/* ---- engines: a TensorRT plan (.plan/.engine + .json sidecar) or an ONNX graph (.onnx, run by
 * OpenVINO on the CPU, compiled once per input shape), each when this build has that backend (msn_available_backends); else MSN_ERR_BACKEND_UNAVAILABLE. */
typedef struct msn_engine msn_engine;
MSN_API msn_status msn_engine_create(const char* path, msn_engine** out);
MSN_API void msn_engine_destroy(msn_engine* engine);
MSN_API int32_t msn_engine_scale(const msn_engine* engine);
/* Upscale `input` into `output` (caller-allocated: width*scale x height*scale, same channels and
 * pixel type). tile = 0 tiles only when the image exceeds the engine's profile. */
MSN_API msn_status msn_engine_upscale(msn_engine* engine, const msn_image* input, msn_image* output,
                                      int32_t tile, int32_t overlap);

#ifdef __cplusplus
}
#endif
#endif /* MSN_INFER_H */
