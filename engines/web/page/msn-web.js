// MSN on this device with onnxruntime-web: decode and check an image, tile it, run the tiles
// (WebGPU where the browser has an adapter, else wasm) and blend them; nothing is sent anywhere.
// Used by the static site (upscaler.js) and by msn-serve's page. The tile rule is msn-deploy's
// (engines/runtime/tiling.py): overlapping square tiles, the last one clamped to the edge,
// outputs blended by linear ramps over the shared edges.

export class UserError extends Error {}

async function pickBackend(asked) {
  if (asked !== "wasm" && navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) return "webgpu";
    } catch (_) { /* no adapter: wasm */ }
  }
  if (asked === "webgpu") throw new UserError("WebGPU was asked for, but this browser offers no WebGPU adapter");
  return "wasm";
}

// `ortBase`: the URL of the folder holding the onnxruntime-web files; `graph`: a URL or the bytes;
// `backend`: "wasm", "webgpu" or "" (WebGPU where offered); `threads`: 0 for as many as isolation allows.
export async function startSession({ ortBase, graph, backend = "", threads = 0 }) {
  const chosen = await pickBackend(backend);
  const ort = await import(new URL(chosen === "webgpu" ? "ort.webgpu.min.mjs" : "ort.wasm.min.mjs", ortBase).href);
  ort.env.wasm.wasmPaths = ortBase;
  // Threads need a cross-origin isolated page (COOP and COEP headers), else the wasm runs on one.
  const most = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  ort.env.wasm.numThreads = threads > 0 ? Math.min(threads, most) : most;
  const session = await ort.InferenceSession.create(graph, { executionProviders: [chosen] });
  return { ort, session, backend: chosen, threads: ort.env.wasm.numThreads };
}

// A tile size and overlap (LR px) the tiling can use, as engines/runtime/tiling.py checks them;
// else a UserError saying what would.
export function checkTiling(tile, overlap, minSize) {
  if (!Number.isInteger(tile) || tile < minSize) {
    throw new UserError(`tile ${tile} is not a whole number of pixels from MSN's minimum input of ${minSize} up`);
  }
  if (!Number.isInteger(overlap) || overlap < 0 || overlap >= Math.floor(tile / 2)) {
    throw new UserError(`overlap ${overlap} must be a whole number in [0, ${Math.floor(tile / 2) - 1}] for tile ` +
                        `${tile} (less than half a tile)`);
  }
}

// What an image file is, from its first bytes (its name and the browser's guess from it can lie).
const SIGNATURES = [
  ["image/png", 0, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]],
  ["image/jpeg", 0, [0xff, 0xd8, 0xff]],
  ["image/gif", 0, [0x47, 0x49, 0x46, 0x38]],
  ["image/bmp", 0, [0x42, 0x4d]],
  ["image/webp", 8, [0x57, 0x45, 0x42, 0x50]], // after "RIFF" and the size
  ["image/avif", 4, [0x66, 0x74, 0x79, 0x70, 0x61, 0x76, 0x69, 0x66]], // "ftypavif"
];

async function contentType(file) {
  const head = new Uint8Array(await file.slice(0, 16).arrayBuffer());
  const found = SIGNATURES.find(([, at, bytes]) => bytes.every((b, i) => head[at + i] === b));
  return found ? found[0] : null;
}

async function inflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// The ICC profile a PNG (iCCP), JPEG (APP2 ICC_PROFILE segments) or WebP (ICCP) carries, or null.
// The pixels are decoded without colour conversion, so the output keeps the profile to mean what
// the photo meant (a Display-P3 photo stays Display-P3).
async function iccProfile(data, type) {
  const bytes = new Uint8Array(data), view = new DataView(data);
  const text = (at, n) => String.fromCharCode(...bytes.subarray(at, at + n));
  if (type === "image/png") {
    for (let at = 8; at + 8 <= bytes.length;) {
      const length = view.getUint32(at), name = text(at + 4, 4);
      if (name === "iCCP") {
        const chunk = bytes.subarray(at + 8, at + 8 + length);
        return inflate(chunk.subarray(chunk.indexOf(0) + 2)); // after the name, its 0 and the method byte
      }
      if (name === "IDAT" || name === "IEND") return null;
      at += 12 + length;
    }
  } else if (type === "image/jpeg") {
    const parts = [];
    for (let at = 2; at + 4 <= bytes.length && bytes[at] === 0xff;) {
      const marker = bytes[at + 1], length = view.getUint16(at + 2);
      if (marker === 0xda) break; // start of scan: no more metadata
      if (marker === 0xe2 && text(at + 4, 12) === "ICC_PROFILE\0") { // then its part number, count, bytes
        parts[bytes[at + 16]] = bytes.subarray(at + 18, at + 2 + length);
      }
      at += 2 + length;
    }
    if (parts.length) return new Uint8Array(await new Blob(parts.filter(Boolean)).arrayBuffer());
  } else if (type === "image/webp") {
    for (let at = 12; at + 8 <= bytes.length;) {
      const length = view.getUint32(at + 4, true);
      if (text(at, 4) === "ICCP") return bytes.slice(at + 8, at + 8 + length);
      at += 8 + length + (length & 1);
    }
  }
  return null;
}

// The image's pixels (and its ICC profile, or null), or a UserError naming what is wrong with it;
// `limits`: maxPixels, minSize.
export async function decodeImage(file, limits) {
  const type = await contentType(file);
  if (!type) {
    throw new UserError(`${file.name} is not an image this page reads; choose a PNG, JPEG, WebP, AVIF, GIF or BMP`);
  }
  const data = await file.arrayBuffer();
  if ("ImageDecoder" in self && await ImageDecoder.isTypeSupported(type)) {
    const decoder = new ImageDecoder({ data, type });
    await decoder.tracks.ready;
    const frames = decoder.tracks.selectedTrack ? decoder.tracks.selectedTrack.frameCount : 1;
    decoder.close();
    if (frames > 1) throw new UserError(`${file.name} is animated (${frames} frames); only still images are upscaled`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([data], { type }),
                                     { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (_) {
    throw new UserError(`${file.name} could not be decoded by this browser; it is damaged or not an image`);
  }
  const { width, height } = bitmap;
  if (width * height > limits.maxPixels) {
    throw new UserError(`${file.name} is ${width}x${height} = ${(width * height).toLocaleString("en")} pixels; ` +
                        `this page takes at most ${limits.maxPixels.toLocaleString("en")} (upscale it in parts, ` +
                        "or with msn-upscale)");
  }
  if (Math.min(width, height) < limits.minSize) {
    throw new UserError(`${file.name} is ${width}x${height}; MSN needs at least ${limits.minSize}x${limits.minSize}`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  let pixels = context.getImageData(0, 0, width, height);
  const solid = opaque(pixels);
  if (!solid) pixels = (await unpremultipliedPixels(data, type, width, height)) || pixels;
  return { bitmap, pixels, opaque: solid, icc: await iccProfile(data, type) };
}

function opaque({ data }) {
  for (let i = 3; i < data.length; i += 4) if (data[i] !== 255) return false;
  return true;
}

// A 2D canvas stores colour premultiplied by alpha, so what it gives back has lost the colour under
// transparent pixels (and rounded it under translucent ones), and MSN's whole-image statistics
// would carry that into opaque pixels. The decoder's own frame is not premultiplied: its RGBA, as
// the file holds it (null where the browser cannot give it).
async function unpremultipliedPixels(data, type, width, height) {
  if (!("ImageDecoder" in self) || !(await ImageDecoder.isTypeSupported(type))) return null;
  const decoder = new ImageDecoder({ data, type, premultiplyAlpha: "none", colorSpaceConversion: "none" });
  try {
    const { image } = await decoder.decode();
    try {
      const order = { RGBA: [0, 1, 2], RGBX: [0, 1, 2], BGRA: [2, 1, 0], BGRX: [2, 1, 0] }[image.format];
      if (!order || image.displayWidth !== width || image.displayHeight !== height) return null;
      // the frame's own layout: copyTo's conversion to another format premultiplies (Chromium 156)
      const raw = new Uint8Array(image.allocationSize());
      const [{ offset, stride }] = await image.copyTo(raw);
      const rgba = new Uint8ClampedArray(4 * width * height);
      for (let y = 0; y < height; y++) {
        for (let x = 0; x < width; x++) {
          const i = offset + y * stride + 4 * x, o = 4 * (y * width + x);
          rgba[o] = raw[i + order[0]]; rgba[o + 1] = raw[i + order[1]]; rgba[o + 2] = raw[i + order[2]];
          rgba[o + 3] = image.format.endsWith("A") ? raw[i + 3] : 255;
        }
      }
      return new ImageData(rgba, width, height);
    } finally {
      image.close();
    }
  } catch (_) {
    return null;
  } finally {
    decoder.close();
  }
}

function axisStarts(length, tile, overlap) {
  if (tile >= length) return [0];
  const starts = [];
  for (let s = 0; s < length - tile; s += tile - overlap) starts.push(s);
  starts.push(length - tile);
  return starts;
}

function ramp(length, rampLength, riseStart, riseEnd) {
  const w = new Float32Array(length).fill(1);
  for (let i = 0; i < rampLength; i++) {
    const rise = Math.fround(Math.fround(i + 0.5) / rampLength);
    if (riseStart) w[i] = Math.min(w[i], rise);
    if (riseEnd) w[length - 1 - i] = Math.min(w[length - 1 - i], rise);
  }
  return w;
}

function planes(image, y0, x0, h, w) {
  const { data, width } = image;
  const out = new Float32Array(3 * h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = 4 * ((y0 + y) * width + x0 + x), o = y * w + x;
      out[o] = data[i] / 255; out[h * w + o] = data[i + 1] / 255; out[2 * h * w + o] = data[i + 2] / 255;
    }
  }
  return out;
}

// Runs every tile and blends them; `onProgress(done, total)` is awaited after each tile.
async function runTiles(image, session, { scale: s, tile, overlap, onProgress }) {
  const H = image.height, W = image.width;
  const whole = tile >= H && tile >= W;
  const ys = whole ? [0] : axisStarts(H, tile, overlap), xs = whole ? [0] : axisStarts(W, tile, overlap);
  const th = whole ? H : Math.min(tile, H), tw = whole ? W : Math.min(tile, W);
  const total = ys.length * xs.length;
  const acc = new Float32Array(3 * H * s * W * s), weight = whole ? null : new Float32Array(H * s * W * s);
  let done = 0, runSeconds = 0;
  for (const y0 of ys) {
    for (const x0 of xs) {
      const input = new session.ort.Tensor("float32", planes(image, y0, x0, th, tw), [1, 3, th, tw]);
      const started = performance.now();
      const results = await session.session.run({ [session.session.inputNames[0]]: input });
      runSeconds += (performance.now() - started) / 1000;
      const out = results[session.session.outputNames[0]].data;
      const oh = th * s, ow = tw * s, OH = H * s, OW = W * s;
      const wy = ramp(oh, whole ? 0 : overlap * s, y0 > 0, y0 + th < H);
      const wx = ramp(ow, whole ? 0 : overlap * s, x0 > 0, x0 + tw < W);
      for (let c = 0; c < 3; c++) {
        for (let y = 0; y < oh; y++) {
          const row = (c * OH + y0 * s + y) * OW + x0 * s, src = (c * oh + y) * ow;
          for (let x = 0; x < ow; x++) {
            const wt = Math.fround(wy[y] * wx[x]);
            acc[row + x] += Math.fround(out[src + x] * wt);
            if (c === 0 && weight) weight[(y0 * s + y) * OW + x0 * s + x] += wt;
          }
        }
      }
      done += 1;
      if (onProgress) await onProgress(done, total);
    }
  }
  return { acc, weight, tiles: total, runSeconds };
}

// The cubic weights of OpenCV's INTER_CUBIC (A = -0.75) at fraction t, as Float32Array(4).
function cubicWeights(t) {
  const A = -0.75, w = new Float32Array(4);
  w[0] = ((A * (t + 1) - 5 * A) * (t + 1) + 8 * A) * (t + 1) - 4 * A;
  w[1] = ((A + 2) * t - (A + 3)) * t * t + 1;
  w[2] = ((A + 2) * (1 - t) - (A + 3)) * (1 - t) * (1 - t) + 1;
  w[3] = 1 - w[0] - w[1] - w[2];
  return w;
}

// One axis of a bicubic resize by `s`: for each output index, its 4 source indices (edges
// repeated) and weights, on the pixel centres as OpenCV places them.
function cubicTaps(length, s) {
  return Array.from({ length: length * s }, (_, d) => {
    const f = (d + 0.5) / s - 0.5, i = Math.floor(f);
    const at = [-1, 0, 1, 2].map((k) => Math.min(length - 1, Math.max(0, i + k)));
    return { at, w: cubicWeights(f - i) };
  });
}

// Alpha upscaled as the Python runtime does it (engines/media/images.py, upscale_alpha): bicubic,
// OpenCV's rule, in [0, 1]; MSN upscales only the colour.
function upscaleAlpha(image, s) {
  const { width: W, height: H, data } = image, OW = W * s, OH = H * s;
  const xs = cubicTaps(W, s), ys = cubicTaps(H, s);
  const rows = new Float32Array(H * OW); // horizontal pass
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < OW; x++) {
      const { at, w } = xs[x];
      let v = 0;
      for (let k = 0; k < 4; k++) v += w[k] * (data[4 * (y * W + at[k]) + 3] / 255);
      rows[y * OW + x] = v;
    }
  }
  const alpha = new Float32Array(OH * OW);
  for (let y = 0; y < OH; y++) {
    const { at, w } = ys[y];
    for (let x = 0; x < OW; x++) {
      let v = 0;
      for (let k = 0; k < 4; k++) v += w[k] * rows[at[k] * OW + x];
      alpha[y * OW + x] = Math.min(1, Math.max(0, v));
    }
  }
  return alpha;
}

function toImageData(image, solid, acc, weight, s) {
  const OH = image.height * s, OW = image.width * s, n = OH * OW;
  const out = new ImageData(OW, OH);
  const alpha = solid ? null : upscaleAlpha(image, s);
  for (let i = 0; i < n; i++) {
    const w = weight ? weight[i] : 1;
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(0, acc[c * n + i] / w));
      out.data[4 * i + c] = Math.round(v * 255);
    }
    out.data[4 * i + 3] = alpha ? Math.round(alpha[i] * 255) : 255;
  }
  return out;
}

// The decoded image upscaled: its ImageData, the tiles run, the seconds it all took and those
// onnxruntime-web took (its runs alone). `options`: scale, tile, overlap (LR px) and onProgress.
export async function upscaleImage(decoded, session, options) {
  const started = performance.now();
  const { acc, weight, tiles, runSeconds } = await runTiles(decoded.pixels, session, options);
  const image = toImageData(decoded.pixels, decoded.opaque, acc, weight, options.scale);
  return { image, tiles, seconds: (performance.now() - started) / 1000, runSeconds };
}

// PNG, encoded here rather than by the canvas (which always writes RGBA): RGB when every pixel is
// opaque, so that an RGB photo comes back RGB, RGBA otherwise; 8 bits, rows filtered by "Sub".
const CRC_TABLE = Uint32Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(bytes) {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function pngChunk(type, data) {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

async function deflate(bytes) {
  const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream("deflate")); // zlib, as PNG wants
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

// `icc`: the source's ICC profile (decodeImage's), written as the PNG's iCCP chunk.
export async function encodePng(image, icc = null) {
  const { width, height, data } = image;
  const solid = opaque(image);
  const channels = solid ? 3 : 4, stride = 1 + width * channels;
  const rows = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    rows[y * stride] = 1; // Sub: each byte minus the same channel of the pixel to its left
    for (let x = 0; x < width; x++) {
      for (let c = 0; c < channels; c++) {
        const i = 4 * (y * width + x) + c;
        rows[y * stride + 1 + x * channels + c] = (data[i] - (x > 0 ? data[i - 4] : 0)) & 0xff;
      }
    }
  }
  const header = new Uint8Array(13);
  const view = new DataView(header.buffer);
  view.setUint32(0, width);
  view.setUint32(4, height);
  header[8] = 8; // bits per channel
  header[9] = solid ? 2 : 6; // colour type: RGB or RGBA
  const signature = new Uint8Array([137, 80, 78, 71, 13, 10, 26, 10]);
  const chunks = [signature, pngChunk("IHDR", header)];
  if (icc) {
    const named = new TextEncoder().encode("ICC profile\0\0"); // the profile's name, its end, method 0 (zlib)
    chunks.push(pngChunk("iCCP", new Uint8Array(await new Blob([named, await deflate(icc)]).arrayBuffer())));
  }
  chunks.push(pngChunk("IDAT", await deflate(rows)), pngChunk("IEND", new Uint8Array()));
  return new Blob(chunks, { type: "image/png" });
}
