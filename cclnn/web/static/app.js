// The page of `cclnn serve`: plain JS, no build step, no network beyond this server.
// One upscale = two requests through the server's queue: MATLAB bicubic, then the network.
"use strict";

const $ = (id) => document.getElementById(id);
const CROP = 64;  // output pixels per side of the side-by-side crops
const state = { image: null, hr: null, offers: [], limits: {}, urls: [], crop: null };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function ordinal(n) {
  return n === 1 ? "next" : `${n}th`.replace(/^2th/, "2nd").replace(/^3th/, "3rd");
}

async function loadModels() {
  const [models, status] = await Promise.all([fetch("/api/models"), fetch("/api/status")]);
  state.offers = await models.json();
  state.limits = await status.json();
  $("device").textContent = `runs on ${state.limits.device}`;
  const names = [...new Set(state.offers.map((o) => o.name))];
  $("model").replaceChildren(...names.map((name) => new Option(name, name)));
  fillScales();
  if (!names.length) setStatus("no network has weights here (see cclnn weights list)", true);
}

function fillScales() {
  const offers = state.offers.filter((o) => o.name === $("model").value);
  $("scale").replaceChildren(...offers.map((o) => new Option(`x${o.scale} (${o.source})`, o.scale)));
  updateRunButton();
}

function updateRunButton() {
  $("run").disabled = !(state.image && $("scale").value);
}

function chooseImage(file) {
  if (!file) return;
  state.image = file;
  $("image-name").textContent = `${file.name} (${(file.size / 1024).toFixed(0)} KiB)`;
  updateRunButton();
}

// POST one job; resolves {blob, headers} or rejects with the server's one-line error
function post(model, label) {
  const ticket = Math.random().toString(36).slice(2) + Date.now().toString(36);
  const form = new FormData();
  form.append("model", model);
  form.append("scale", $("scale").value);
  form.append("ticket", ticket);
  form.append("image", state.image);
  if (state.hr) form.append("hr", state.hr);
  const poll = setInterval(() => showQueue(ticket, label), 300);
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/api/upscale");
    xhr.responseType = "blob";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        $("progress").value = e.loaded / e.total;
        setStatus(`${label}: uploading ${Math.round(100 * e.loaded / e.total)}%`);
      }
    };
    xhr.onload = async () => {
      clearInterval(poll);
      if (xhr.status === 200) {
        resolve({ blob: xhr.response, header: (name) => xhr.getResponseHeader(name) });
        return;
      }
      let message = `${label}: HTTP ${xhr.status}`;
      try { message = `${label}: ${JSON.parse(await xhr.response.text()).error}`; } catch (e) { /* not JSON */ }
      reject(new Error(message));
    };
    xhr.onerror = () => { clearInterval(poll); reject(new Error(`${label}: the server cannot be reached`)); };
    xhr.send(form);
  });
}

async function showQueue(ticket, label) {
  try {
    const s = await (await fetch(`/api/status?ticket=${ticket}`)).json();
    if (s.position === 0) {
      const [done, total] = s.tiles || [0, 0];
      $("progress").value = total ? done / total : 0.5;
      setStatus(total > 1 ? `${label}: running, tile ${done} of ${total}` : `${label}: running`);
    } else if (s.position) {
      setStatus(`${label}: waiting, ${ordinal(s.position)} in the queue (${s.waiting} waiting)`);
    }
  } catch (e) { /* the upload's own request reports errors */ }
}

function objectUrl(blob) {
  const url = URL.createObjectURL(blob);
  state.urls.push(url);
  return url;
}

function loadImage(img, url) {
  return new Promise((resolve, reject) => {
    img.onload = resolve;
    img.onerror = () => reject(new Error("the browser cannot show the result"));
    img.src = url;
  });
}

function metricRow(name, response) {
  const psnr = response.header("X-Cclnn-PSNR");
  if (psnr === null) return null;
  const row = document.createElement("tr");
  for (const text of [name, Number(psnr).toFixed(2), Number(response.header("X-Cclnn-SSIM")).toFixed(4)]) {
    row.insertCell().textContent = text;
  }
  return row;
}

async function run() {
  const limit = state.limits.max_upload_bytes;
  const size = state.image.size + (state.hr ? state.hr.size : 0);
  if (limit && size > limit) {
    setStatus(`the upload is ${(size / 2 ** 20).toFixed(1)} MiB, over the limit of ${(limit / 2 ** 20).toFixed(1)} MiB`, true);
    return;
  }
  const model = $("model").value;
  $("run").disabled = true;
  $("progress").hidden = false;
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
  const started = performance.now();
  try {
    const bicubic = await post("bicubic", "bicubic");
    const network = await post(model, model);
    await show(bicubic, network, model);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    setStatus(`done in ${seconds} s (network: ${Number(network.header("X-Cclnn-Seconds")).toFixed(2)} s on the server)`);
  } catch (e) {
    setStatus(e.message, true);
  } finally {
    $("progress").hidden = true;
    updateRunButton();
  }
}

async function show(bicubic, network, model) {
  const srUrl = objectUrl(network.blob);
  await Promise.all([loadImage($("bicubic-img"), objectUrl(bicubic.blob)), loadImage($("sr-img"), srUrl)]);
  const img = $("sr-img");
  $("result").hidden = false;  // measured below
  const room = $("result").clientWidth - 34;  // its padding and border
  const width = Math.min(Math.max(img.naturalWidth, 512), room > 0 ? room : img.naturalWidth);
  for (const el of [$("bicubic-img"), img, $("slider")]) el.style.width = `${width}px`;
  $("sr-tag").textContent = $("crop-sr-caption").textContent = model;
  const disposition = network.header("Content-Disposition") || "";
  const name = (disposition.match(/filename="([^"]+)"/) || [])[1] || "upscaled.png";
  $("download").href = srUrl;
  $("download").download = name;
  const rows = [metricRow("bicubic", bicubic), metricRow(model, network)].filter(Boolean);
  $("metrics").tBodies[0].replaceChildren(...rows);
  $("metrics").hidden = !rows.length;
  $("outputs").hidden = false;
  $("crop-hr-figure").hidden = !state.hr;
  if (state.hr) state.hrImage = await createImageBitmap(state.hr);
  state.crop = state.crop || { x: img.naturalWidth / 2, y: img.naturalHeight / 2 };
  drawCrops();
  $("result").dataset.ready = "1";
}

function setSlider(value) {
  $("sr-img").style.clipPath = `inset(0 0 0 ${value}%)`;
  $("divider").style.left = `${value}%`;
}

// the same crop of bicubic, network and HR side by side, magnified without smoothing
function drawCrops() {
  const img = $("sr-img");
  const w = img.naturalWidth, h = img.naturalHeight, side = Math.min(CROP, w, h);
  const x = Math.max(0, Math.min(w - side, Math.round(state.crop.x - side / 2)));
  const y = Math.max(0, Math.min(h - side, Math.round(state.crop.y - side / 2)));
  const sources = [["crop-bicubic", $("bicubic-img")], ["crop-sr", img], ["crop-hr", state.hr && state.hrImage]];
  for (const [id, source] of sources) {
    if (!source) continue;
    const ctx = $(id).getContext("2d");
    ctx.imageSmoothingEnabled = false;
    ctx.clearRect(0, 0, 256, 256);
    ctx.drawImage(source, x, y, side, side, 0, 0, 256, 256);
  }
  const k = img.clientWidth / w, box = $("crop-box");
  Object.assign(box.style, { display: "block", left: `${x * k}px`, top: `${y * k}px`,
                             width: `${side * k}px`, height: `${side * k}px` });
}

function pickCrop(event) {
  const img = $("sr-img"), rect = img.getBoundingClientRect();
  const k = img.naturalWidth / rect.width;
  state.crop = { x: (event.clientX - rect.left) * k, y: (event.clientY - rect.top) * k };
  drawCrops();
}

function wireDrop() {
  const drop = $("drop");
  for (const type of ["dragenter", "dragover"]) {
    drop.addEventListener(type, (e) => { e.preventDefault(); drop.classList.add("over"); });
  }
  for (const type of ["dragleave", "drop"]) {
    drop.addEventListener(type, () => drop.classList.remove("over"));
  }
  drop.addEventListener("drop", (e) => { e.preventDefault(); chooseImage(e.dataTransfer.files[0]); });
}

$("image").addEventListener("change", (e) => chooseImage(e.target.files[0]));
$("hr").addEventListener("change", (e) => { state.hr = e.target.files[0] || null; });
$("model").addEventListener("change", fillScales);
$("scale").addEventListener("change", updateRunButton);
$("run").addEventListener("click", run);
$("slider").addEventListener("input", (e) => setSlider(e.target.value));
$("compare").addEventListener("click", pickCrop);
window.addEventListener("resize", () => { if (state.crop && !$("result").hidden) drawCrops(); });
wireDrop();
loadModels().catch((e) => setStatus(`cannot load the networks: ${e.message}`, true));
