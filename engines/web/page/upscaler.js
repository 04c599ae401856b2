// The static page: MSN x4 on this device (msn-web.js), with a progress bar, a before/after slider,
// the time taken, the backend used and a download link. Query parameters for tests and
// benchmarks: backend (wasm, webgpu), threads, tile, overlap.

import { UserError, checkTiling, decodeImage, encodePng, startSession, upscaleImage } from "./msn-web.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const state = { status: "loading", result: null };
window.msn = state; // what the page did last, for people and for tests

// The exporter writes config.json; a site without it, or with a damaged one, says so.
async function readConfig() {
  let config;
  try {
    const reply = await fetch("config.json");
    if (!reply.ok) throw new Error(`HTTP ${reply.status}`);
    config = await reply.json();
  } catch (error) {
    throw new UserError(`This site's config.json is missing or damaged (${error.message}); export the site again ` +
                        "(python -m msn_deploy.engines.web export FOLDER)");
  }
  const missing = ["scale", "tile", "overlap", "max_pixels", "min_size"].filter((k) => !Number.isInteger(config[k]));
  if (typeof config.graph !== "string") missing.push("graph");
  if (missing.length) {
    throw new UserError(`This site's config.json lacks ${missing.join(", ")}; export the site again ` +
                        "(python -m msn_deploy.engines.web export FOLDER)");
  }
  return config;
}

// The tiling: the site's, or the query's tile and overlap, checked as the Python runtime checks them.
function tilingOf(config) {
  const asked = (name) => (params.has(name) ? Number(params.get(name)) : config[name]);
  const tiling = { scale: config.scale, tile: asked("tile"), overlap: asked("overlap") };
  checkTiling(tiling.tile, tiling.overlap, config.min_size);
  return tiling;
}

let config, tiling;
try {
  config = await readConfig();
  tiling = tilingOf(config);
} catch (error) {
  fail(error);
  throw error;
}
const limits = { maxPixels: config.max_pixels, minSize: config.min_size };
$("limit").textContent = config.max_pixels.toLocaleString("en");

const ready = startSession({ ortBase: new URL("./ort/", location.href).href, graph: config.graph,
                             backend: params.get("backend") || "", threads: Number(params.get("threads") || 0) });
ready.then((s) => { state.status = "ready"; setStatus(`Ready: ${s.backend}, ${s.threads} thread(s).`); },
           (e) => fail(e));

function setStatus(text) { $("status").textContent = text; }

function fail(error) {
  state.status = "error";
  state.error = error.message;
  $("error").textContent = error instanceof UserError ? error.message : `Failed: ${error.message}`;
}

async function progress(done, total) {
  $("progress").max = total;
  $("progress").value = done;
  $("tiles").textContent = `${done} / ${total} tiles`;
  await new Promise((r) => setTimeout(r, 0)); // let the progress bar paint
}

function show(file, decoded, result) {
  const after = $("after"), before = $("before");
  after.width = result.width; after.height = result.height;
  after.getContext("2d").putImageData(result, 0, 0);
  before.width = decoded.pixels.width; before.height = decoded.pixels.height;
  before.getContext("2d").drawImage(decoded.bitmap, 0, 0);
  const clip = () => { before.style.clipPath = `inset(0 ${100 - $("slider").value}% 0 0)`; };
  $("slider").oninput = clip;
  clip();
  encodePng(result, decoded.icc).then((blob) => {
    const link = $("download");
    if (link.href) URL.revokeObjectURL(link.href);
    link.href = URL.createObjectURL(blob);
    link.download = file.name.replace(/\.[^.]*$/, "") + `_x${config.scale}.png`;
  });
  $("result").classList.remove("hidden");
}

async function run(file) {
  $("error").textContent = "";
  $("result").classList.add("hidden");
  state.status = "running";
  state.result = null;
  try {
    const session = await ready;
    const decoded = await decodeImage(file, limits);
    const { image, tiles, seconds, runSeconds } = await upscaleImage(decoded, session, { ...tiling, onProgress: progress });
    show(file, decoded, image);
    const { width, height } = decoded.pixels;
    setStatus(`${file.name}: ${width}x${height} -> ${image.width}x${image.height} in ` +
              `${seconds.toFixed(2)} s on ${session.backend} (${session.threads} thread(s), ${tiles} tile(s)).`);
    state.result = { width: image.width, height: image.height, backend: session.backend, threads: session.threads,
                     seconds, runSeconds, tiles, pixels: image.data };
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

$("file").addEventListener("change", () => {
  const chosen = $("file").files[0];
  $("file").value = ""; // so that choosing the same file again is a change too
  if (chosen) run(chosen);
});
const drop = $("drop");
drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
drop.addEventListener("dragleave", () => drop.classList.remove("over"));
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  drop.classList.remove("over");
  if (e.dataTransfer.files[0]) run(e.dataTransfer.files[0]);
});
