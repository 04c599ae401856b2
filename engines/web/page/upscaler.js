// MSN x4 in the browser: the image is decoded, tiled, run through onnxruntime-web (WebGPU where the
// browser has an adapter, else wasm) and blended here; nothing is sent anywhere. The tile rule is
// msn-deploy's (engines/runtime/tiling.py): overlapping square tiles, the last one clamped to the
// edge, outputs blended by linear ramps over the shared edges.

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const config = await (await fetch("config.json")).json();
const tile = Number(params.get("tile") || config.tile);
const overlap = Number(params.get("overlap") ?? config.overlap);
$("limit").textContent = config.max_pixels.toLocaleString("en");

class UserError extends Error {}

const state = { status: "loading", result: null };
window.msn = state; // what the page did last, for people and for tests

async function pickBackend() {
  const asked = params.get("backend");
  if (asked !== "wasm" && navigator.gpu) {
    try {
      if (await navigator.gpu.requestAdapter()) return "webgpu";
    } catch (_) { /* no adapter: wasm */ }
  }
  if (asked === "webgpu") throw new UserError("WebGPU was asked for, but this browser offers no WebGPU adapter");
  return "wasm";
}

async function startSession() {
  const backend = await pickBackend();
  const ort = await import(backend === "webgpu" ? "./ort/ort.webgpu.min.mjs" : "./ort/ort.wasm.min.mjs");
  ort.env.wasm.wasmPaths = new URL("./ort/", location.href).href;
  ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const session = await ort.InferenceSession.create(config.graph, { executionProviders: [backend] });
  return { ort, session, backend, threads: ort.env.wasm.numThreads };
}

const ready = startSession();
ready.then((s) => { state.status = "ready"; setStatus(`Ready: ${s.backend}, ${s.threads} thread(s).`); },
           (e) => fail(e));

function setStatus(text) { $("status").textContent = text; }

function fail(error) {
  state.status = "error";
  state.error = error.message;
  $("error").textContent = error instanceof UserError ? error.message : `Failed: ${error.message}`;
}

async function decode(file) {
  if (!file.type.startsWith("image/")) {
    throw new UserError(`${file.name} is not an image (${file.type || "unknown type"}); choose a PNG, JPEG or WebP`);
  }
  const data = await file.arrayBuffer();
  if ("ImageDecoder" in self && await ImageDecoder.isTypeSupported(file.type)) {
    const decoder = new ImageDecoder({ data, type: file.type });
    await decoder.tracks.ready;
    const frames = decoder.tracks.selectedTrack ? decoder.tracks.selectedTrack.frameCount : 1;
    decoder.close();
    if (frames > 1) throw new UserError(`${file.name} is animated (${frames} frames); only still images are upscaled`);
  }
  let bitmap;
  try {
    bitmap = await createImageBitmap(new Blob([data], { type: file.type }),
                                     { colorSpaceConversion: "none", premultiplyAlpha: "none" });
  } catch (_) {
    throw new UserError(`${file.name} could not be decoded by this browser; it is damaged or not an image`);
  }
  const { width, height } = bitmap;
  if (width * height > config.max_pixels) {
    throw new UserError(`${file.name} is ${width}x${height} = ${(width * height).toLocaleString("en")} pixels; ` +
                        `this page takes at most ${config.max_pixels.toLocaleString("en")} (upscale it in parts, ` +
                        "or with msn-upscale)");
  }
  if (Math.min(width, height) < config.min_size) {
    throw new UserError(`${file.name} is ${width}x${height}; MSN needs at least ${config.min_size}x${config.min_size}`);
  }
  const canvas = new OffscreenCanvas(width, height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  return { bitmap, pixels: context.getImageData(0, 0, width, height) };
}

function axisStarts(length) {
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

async function upscale(image, session) {
  const s = config.scale, H = image.height, W = image.width;
  const whole = tile >= H && tile >= W;
  const ys = whole ? [0] : axisStarts(H), xs = whole ? [0] : axisStarts(W);
  const th = whole ? H : Math.min(tile, H), tw = whole ? W : Math.min(tile, W);
  const total = ys.length * xs.length;
  const acc = new Float32Array(3 * H * s * W * s), weight = whole ? null : new Float32Array(H * s * W * s);
  $("progress").max = total;
  let done = 0;
  for (const y0 of ys) {
    for (const x0 of xs) {
      const input = new session.ort.Tensor("float32", planes(image, y0, x0, th, tw), [1, 3, th, tw]);
      const results = await session.session.run({ [session.session.inputNames[0]]: input });
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
      $("progress").value = done;
      $("tiles").textContent = `${done} / ${total} tiles`;
      await new Promise((r) => setTimeout(r, 0)); // let the progress bar paint
    }
  }
  return { acc, weight, tiles: total };
}

function toImageData(image, acc, weight, bitmap) {
  const s = config.scale, OH = image.height * s, OW = image.width * s, n = OH * OW;
  const out = new ImageData(OW, OH);
  const alpha = new OffscreenCanvas(OW, OH).getContext("2d");
  alpha.imageSmoothingQuality = "high";
  alpha.drawImage(bitmap, 0, 0, OW, OH); // alpha resized by the browser; colours come from MSN
  const a = alpha.getImageData(0, 0, OW, OH).data;
  for (let i = 0; i < n; i++) {
    const w = weight ? weight[i] : 1;
    for (let c = 0; c < 3; c++) {
      const v = Math.min(1, Math.max(0, acc[c * n + i] / w));
      out.data[4 * i + c] = Math.round(v * 255);
    }
    out.data[4 * i + 3] = a[4 * i + 3];
  }
  return out;
}

function show(file, image, bitmap, result) {
  const after = $("after"), before = $("before");
  after.width = result.width; after.height = result.height;
  after.getContext("2d").putImageData(result, 0, 0);
  before.width = image.width; before.height = image.height;
  before.getContext("2d").drawImage(bitmap, 0, 0);
  const clip = () => { before.style.clipPath = `inset(0 ${100 - $("slider").value}% 0 0)`; };
  $("slider").oninput = clip;
  clip();
  after.toBlob((blob) => {
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = file.name.replace(/\.[^.]*$/, "") + `_x${config.scale}.png`;
  }, "image/png");
  $("result").classList.remove("hidden");
}

async function run(file) {
  $("error").textContent = "";
  $("result").classList.add("hidden");
  state.status = "running";
  state.result = null;
  try {
    const session = await ready;
    const { bitmap, pixels } = await decode(file);
    const started = performance.now();
    const { acc, weight, tiles } = await upscale(pixels, session);
    const result = toImageData(pixels, acc, weight, bitmap);
    const seconds = (performance.now() - started) / 1000;
    show(file, pixels, bitmap, result);
    setStatus(`${file.name}: ${pixels.width}x${pixels.height} -> ${result.width}x${result.height} in ` +
              `${seconds.toFixed(2)} s on ${session.backend} (${session.threads} thread(s), ${tiles} tile(s)).`);
    state.result = { width: result.width, height: result.height, backend: session.backend, seconds, tiles,
                     pixels: result.data };
    state.status = "done";
  } catch (error) {
    fail(error);
  }
}

// For tests and scripts: the last result's RGBA bytes, base64.
window.msnResultBase64 = () => {
  const bytes = state.result.pixels;
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
};

$("file").addEventListener("change", () => { if ($("file").files[0]) run($("file").files[0]); });
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
});
