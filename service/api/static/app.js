// Vigil operator console: plain JavaScript over the API of the server that serves this page.
"use strict";

(() => {
  const TOKEN_KEY = "vigil.operatorToken";
  const SNAPSHOT_MS = 3000;
  const SCORES_MS = 2000;
  const CAMERAS_MS = 5000;
  const MODELS_MS = 30000;
  const SPARK_POINTS = 120;
  const MAX_ALERTS = 200;
  const FEED_RETRY_MAX_MS = 15000;

  const $ = (id) => document.getElementById(id);
  const state = {
    cameras: new Map(), // id -> {camera, tile, scores}
    alerts: new Map(), // id -> alert
    lastEventId: null, // of the last alert event received: the feed resumes after it
    detailAlertId: null,
    heatCamera: null,
    zone: null, // {camera, zones: [[[x, y], ...]], current: [[x, y], ...]}
  };

  // ------------------------------------------------------------------ helpers
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  const operatorToken = () => localStorage.getItem(TOKEN_KEY) || "";
  const cameraPath = (id) => `/api/cameras/${encodeURIComponent(id)}`;
  const alertPath = (id) => `/api/alerts/${encodeURIComponent(id)}`;

  function describe(data) {
    if (data && typeof data === "object" && "detail" in data) {
      const detail = data.detail;
      if (Array.isArray(detail)) {
        return detail.map((e) => `${(e.loc || []).slice(1).join(".") || "input"}: ${e.msg}`).join("; ");
      }
      return String(detail);
    }
    return typeof data === "string" ? data : "";
  }

  async function api(method, path, body) {
    const headers = {};
    const token = operatorToken();
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        cache: "no-store",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (err) {
      return { ok: false, status: 0, data: null, detail: "the server is unreachable" };
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (err) {
        data = text;
      }
    }
    return { ok: response.ok, status: response.status, data, detail: describe(data) };
  }

  function errorText(res) {
    if (res.status === 0) return res.detail;
    let text = `${res.status}: ${res.detail || "request failed"}`;
    if (res.status === 401) text += " (set the operator token at the top)";
    return text;
  }

  function say(element, text, kind) {
    element.textContent = text;
    element.className = `message ${kind || ""}`;
  }

  const formatTime = (ts) => new Date(ts * 1000).toLocaleString();
  const formatScore = (score) => (typeof score === "number" ? score.toFixed(2) : "–");

  function formatDuration(seconds) {
    if (seconds < 60) return `${seconds.toFixed(1)} s`;
    const minutes = Math.floor(seconds / 60);
    return `${minutes} min ${Math.round(seconds - minutes * 60)} s`;
  }

  async function poll(task, intervalMs) {
    for (;;) {
      if (!document.hidden) {
        try {
          await task();
        } catch (err) {
          console.error(err);
        }
      }
      await sleep(intervalMs);
    }
  }

  // Loads an image into an <img> through fetch: no flicker while loading, and the API's reason on failure.
  async function loadImage(img, url) {
    const headers = operatorToken() ? { Authorization: `Bearer ${operatorToken()}` } : {};
    let response;
    try {
      response = await fetch(url, { cache: "no-store", headers });
    } catch (err) {
      return "the server is unreachable";
    }
    if (!response.ok) {
      const text = await response.text();
      let data = text;
      try {
        data = JSON.parse(text);
      } catch (err) {
        // not JSON: the text itself
      }
      return `${response.status}: ${describe(data) || "no image"}`;
    }
    const blob = await response.blob();
    const previous = img.dataset.objectUrl;
    const objectUrl = URL.createObjectURL(blob);
    await new Promise((resolve) => {
      img.onload = resolve;
      img.onerror = resolve;
      img.src = objectUrl;
    });
    img.dataset.objectUrl = objectUrl;
    if (previous) URL.revokeObjectURL(previous);
    return null;
  }

  // ------------------------------------------------------------------ operator token
  function showTokenState() {
    $("token-state").textContent = operatorToken() ? "set" : "not set";
  }

  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const value = $("token-input").value.trim();
    if (value) localStorage.setItem(TOKEN_KEY, value);
    else localStorage.removeItem(TOKEN_KEY);
    $("token-input").value = "";
    showTokenState();
  });

  // ------------------------------------------------------------------ cameras
  function newTile(id) {
    const tile = $("tile-template").content.firstElementChild.cloneNode(true);
    tile.dataset.camera = id;
    tile.querySelector(".tile-name").textContent = id;
    tile.querySelector(".tile-name").title = id;
    tile.querySelector(".tile-image").alt = `Latest image of ${id}`;
    tile.querySelector(".tile-heat").addEventListener("click", () => openCameraHeat(id));
    tile.querySelector(".tile-zones").addEventListener("click", () => openZones(id));
    tile.querySelector(".tile-remove").addEventListener("click", () => removeCamera(id));
    tile.querySelector(".tile-snooze").addEventListener("click", () => toggleSnooze(id));
    $("tiles").appendChild(tile);
    showSnooze(id);
    return tile;
  }

  // A snoozed camera raises no alert until the snooze ends (the whole camera here; a zone of it from the
  // zone editor).
  async function showSnooze(id) {
    const res = await api("GET", `${cameraPath(id)}/snooze`);
    const entry = state.cameras.get(id);
    if (!res.ok || !entry) return;
    const until = res.data.until_ts * 1000;
    entry.snoozedUntil = until > Date.now() ? until : 0;
    const button = entry.tile.querySelector(".tile-snooze");
    button.textContent = entry.snoozedUntil ? "Unsnooze" : "Snooze 1 h";
    button.setAttribute("aria-pressed", String(Boolean(entry.snoozedUntil)));
    button.title = entry.snoozedUntil ? `Snoozed until ${new Date(entry.snoozedUntil).toLocaleTimeString()}` : "";
  }

  async function toggleSnooze(id) {
    const entry = state.cameras.get(id);
    const snoozed = entry && entry.snoozedUntil > Date.now();
    const res = snoozed
      ? await api("DELETE", `${cameraPath(id)}/snooze`)
      : await api("POST", `${cameraPath(id)}/snooze`, { duration_s: 3600 });
    if (res.ok) say($("camera-message"), `Camera ${id} ${snoozed ? "unsnoozed" : "snoozed for an hour"}.`, "ok");
    else say($("camera-message"), `Camera ${id}: snooze not changed: ${errorText(res)}`, "error");
    await showSnooze(id);
  }

  function updateTile(entry) {
    const { camera, tile } = entry;
    const status = camera.status;
    const stateName = status ? status.state : "waiting";
    const badge = tile.querySelector(".tile-state");
    badge.textContent = camera.enabled ? stateName : "disabled";
    badge.className = `badge tile-state ${stateName}`;
    const message = status ? status.message : "waiting for the ingest worker";
    const fps = status && status.fps ? ` · ${status.fps.toFixed(1)} fps` : "";
    tile.querySelector(".tile-message").textContent = `${message}${fps}`;
    tile.querySelector(".tile-message").title = camera.source;
    // the retraining worker found the view moved: the model scores the camera without its place map
    const moved = tile.querySelector(".tile-moved");
    moved.hidden = !camera.view_moved;
    moved.title = camera.view_moved
      ? "Its walkers move where the model's map of this view says nothing does: the camera is scored " +
        "without that map, the other evidence as before. Point it back, or leave it. A camera the " +
        "model was never fitted to shows this too: fit it to every camera (vigil train --all-cameras)."
      : "";
  }

  async function refreshCameras() {
    const res = await api("GET", "/api/cameras");
    if (!res.ok) {
      say($("camera-message"), `Cameras: ${errorText(res)}`, "error");
      return;
    }
    const seen = new Set();
    for (const camera of res.data) {
      seen.add(camera.id);
      let entry = state.cameras.get(camera.id);
      if (!entry) {
        entry = { camera, tile: newTile(camera.id), scores: [] };
        state.cameras.set(camera.id, entry);
        refreshSnapshot(entry);
        refreshScores(entry);
      }
      entry.camera = camera;
      updateTile(entry);
    }
    for (const [id, entry] of state.cameras) {
      if (!seen.has(id)) {
        entry.tile.remove();
        state.cameras.delete(id);
      }
    }
    $("no-cameras").hidden = state.cameras.size > 0;
    markAlarms();
  }

  async function refreshSnapshot(entry) {
    const img = entry.tile.querySelector(".tile-image");
    const placeholder = entry.tile.querySelector(".tile-noimage");
    const problem = await loadImage(img, `${cameraPath(entry.camera.id)}/snapshot.jpg`);
    img.hidden = problem !== null;
    placeholder.hidden = problem === null;
    if (problem) placeholder.textContent = problem.startsWith("404") ? "No image yet" : `No image: ${problem}`;
  }

  async function refreshScores(entry) {
    const res = await api("GET", `${cameraPath(entry.camera.id)}/scores?limit=${SPARK_POINTS}`);
    if (!res.ok) return;
    entry.scores = res.data;
    const last = entry.scores[entry.scores.length - 1];
    const value = entry.tile.querySelector(".score-value");
    value.textContent = last ? formatScore(last.score) : "–";
    value.classList.toggle("high", Boolean(last && last.anomalous));
    value.title = last ? `frame ${last.seq} at ${formatTime(last.ts)}` : "no scores yet";
    drawSparkline(entry.tile.querySelector(".sparkline"), entry.scores, entry.camera.threshold);
  }

  function drawSparkline(canvas, points, threshold) {
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(canvas.clientWidth, 1) * ratio;
    const height = Math.max(canvas.clientHeight, 1) * ratio;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    const y = (score) => height - 2 * ratio - Math.min(Math.max(score, 0), 1) * (height - 4 * ratio);
    if (typeof threshold === "number") {
      ctx.strokeStyle = "rgba(240, 180, 41, 0.6)";
      ctx.setLineDash([4 * ratio, 3 * ratio]);
      ctx.beginPath();
      ctx.moveTo(0, y(threshold));
      ctx.lineTo(width, y(threshold));
      ctx.stroke();
      ctx.setLineDash([]);
    }
    if (points.length < 2) return;
    const step = width / (SPARK_POINTS - 1);
    const x0 = width - (points.length - 1) * step;
    ctx.lineWidth = 1.5 * ratio;
    for (let i = 1; i < points.length; i++) {
      ctx.strokeStyle = points[i].anomalous ? "#ff5a4f" : "#4ea1ff";
      ctx.beginPath();
      ctx.moveTo(x0 + (i - 1) * step, y(points[i - 1].score));
      ctx.lineTo(x0 + i * step, y(points[i].score));
      ctx.stroke();
    }
  }

  function markAlarms() {
    const alarmed = new Set();
    for (const alert of state.alerts.values()) if (alert.state === "open") alarmed.add(alert.camera);
    for (const [id, entry] of state.cameras) entry.tile.classList.toggle("alarm", alarmed.has(id));
  }

  $("camera-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const form = event.target;
    const body = { id: form.id.value.trim(), source: form.source.value.trim(), loop: form.loop.checked };
    if (form.fps.value) body.fps = Number(form.fps.value);
    const res = await api("POST", "/api/cameras", body);
    if (res.ok) {
      say($("camera-message"), `Camera ${body.id} added.`, "ok");
      form.reset();
      $("add-camera").open = false;
      await refreshCameras();
    } else {
      say($("camera-message"), `Camera not added: ${errorText(res)}`, "error");
    }
  });

  async function removeCamera(id) {
    if (!window.confirm(`Remove camera ${id}? Its alerts are kept.`)) return;
    const res = await api("DELETE", cameraPath(id));
    if (res.ok) say($("camera-message"), `Camera ${id} removed.`, "ok");
    else say($("camera-message"), `Camera ${id} not removed: ${errorText(res)}`, "error");
    await refreshCameras();
  }

  // ------------------------------------------------------------------ alerts
  function upsertAlert(alert, fresh) {
    const known = state.alerts.get(alert.id);
    if (known && known.updated_ts > alert.updated_ts) return; // an older state of the alert
    state.alerts.set(alert.id, alert);
    renderAlerts(fresh ? alert.id : null);
    if (state.detailAlertId === alert.id) showAlertFacts(alert);
  }

  function alertItem(alert, fresh) {
    const item = document.createElement("li");
    item.className = `alert-item ${alert.state}${fresh ? " fresh" : ""}`;
    item.tabIndex = 0;
    item.dataset.alertId = alert.id;
    const camera = document.createElement("strong");
    camera.textContent = alert.camera;
    const badge = document.createElement("span");
    badge.className = `badge ${alert.state}`;
    badge.textContent = alert.state;
    const when = document.createElement("span");
    when.className = "when";
    const end = alert.end_ts || alert.updated_ts;
    when.textContent = `${formatTime(alert.start_ts)} · ${formatDuration(Math.max(end - alert.start_ts, 0))}`;
    const peak = document.createElement("span");
    peak.className = "when";
    peak.textContent = `peak ${formatScore(alert.peak_score)}`;
    item.append(camera, badge, when, peak);
    item.addEventListener("click", () => openAlert(alert.id));
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openAlert(alert.id);
    });
    return item;
  }

  function renderAlerts(freshId) {
    const sorted = [...state.alerts.values()].sort((a, b) => b.start_ts - a.start_ts);
    for (const old of sorted.slice(MAX_ALERTS)) state.alerts.delete(old.id);
    const shown = sorted.slice(0, MAX_ALERTS);
    $("alert-list").replaceChildren(...shown.map((alert) => alertItem(alert, alert.id === freshId)));
    $("no-alerts").hidden = shown.length > 0;
    const open = shown.filter((alert) => alert.state === "open").length;
    $("alert-count").textContent = shown.length ? `${open} open · ${shown.length} shown` : "";
    markAlarms();
  }

  async function loadAlerts() {
    const res = await api("GET", "/api/alerts?limit=100");
    if (!res.ok) {
      $("no-alerts").textContent = `Alerts: ${errorText(res)}`;
      return;
    }
    $("no-alerts").textContent = "No alerts.";
    for (const alert of res.data.items) upsertAlert(alert, false);
    renderAlerts(null);
  }

  function setFeedStatus(text, kind) {
    const badge = $("feed-status");
    badge.textContent = text;
    badge.className = `badge ${kind}`;
  }

  // The live feed. Without a last event id (first connection, or the id was refused) the list is
  // reloaded once connected: it covers whatever happened before the feed's starting point.
  function connectFeed(retryMs) {
    const url = new URL("/ws/alerts", window.location.href);
    url.protocol = window.location.protocol === "https:" ? "wss:" : "ws:";
    if (state.lastEventId) url.searchParams.set("last_id", state.lastEventId);
    const socket = new WebSocket(url);
    let opened = false;
    socket.onopen = () => {
      opened = true;
      setFeedStatus("live", "live");
      if (!state.lastEventId) loadAlerts();
    };
    socket.onmessage = (message) => {
      const frame = JSON.parse(message.data);
      if (frame.error) {
        console.warn("alert feed:", frame.error);
        state.lastEventId = null;
        return;
      }
      state.lastEventId = frame.id;
      upsertAlert(frame.alert, frame.type === "new");
    };
    socket.onclose = () => {
      const delay = opened ? 1000 : retryMs;
      setFeedStatus("reconnecting…", "reconnecting");
      setTimeout(() => connectFeed(opened ? 1000 : Math.min(retryMs * 2, FEED_RETRY_MAX_MS)), delay);
    };
  }

  // ------------------------------------------------------------------ the side panel
  function openPanel(title, section) {
    $("detail-title").textContent = title;
    for (const id of ["alert-detail", "camera-heat", "zone-editor"]) $(id).hidden = id !== section;
    const topbar = document.querySelector(".topbar");
    document.documentElement.style.setProperty("--topbar-height", `${topbar.offsetHeight}px`);
    $("detail").hidden = false;
  }

  function closePanel() {
    $("detail").hidden = true;
    state.detailAlertId = null;
    state.heatCamera = null;
    state.zone = null;
  }

  $("detail-close").addEventListener("click", closePanel);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !$("detail").hidden) closePanel();
  });

  function showAlertFacts(alert) {
    const end = alert.end_ts ? formatTime(alert.end_ts) : "still open";
    const facts = [
      ["Camera", alert.camera],
      ["State", alert.state],
      ["Started", formatTime(alert.start_ts)],
      ["Ended", end],
      ["Peak score", `${formatScore(alert.peak_score)} (frame ${alert.peak_seq}, ${formatTime(alert.peak_ts)})`],
      ["Model", alert.model],
      ["Id", alert.id],
    ];
    $("alert-facts").replaceChildren(
      ...facts.flatMap(([name, value]) => {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = value;
        return [dt, dd];
      }),
    );
  }

  async function openAlert(id) {
    const alert = state.alerts.get(id);
    if (!alert) return;
    state.detailAlertId = id;
    openPanel(`Alert on ${alert.camera}`, "alert-detail");
    showAlertFacts(alert);
    say($("feedback-message"), "");
    const img = $("alert-heatmap");
    img.removeAttribute("src");
    $("alert-heatmap-note").textContent = "loading heat map…";
    const problem = await loadImage(img, `${alertPath(id)}/heatmap.png`);
    if (state.detailAlertId !== id) return;
    img.hidden = problem !== null;
    $("alert-heatmap-note").textContent = problem
      ? `No heat map: ${problem}`
      : "Colours show where the frame differed from what the detector expected; see the scale below the image.";
    showClip(id, alert);
    // preload none: the MP4 is encoded on demand, only when the operator plays or downloads it
    $("alert-video").src = `${alertPath(id)}/clip.mp4?heatmap=true`;
    $("alert-video-link").href = `${alertPath(id)}/clip.mp4`;
  }

  async function showClip(id, alert) {
    const strip = $("alert-clip");
    strip.replaceChildren();
    const res = await api("GET", `${alertPath(id)}/clip`);
    if (state.detailAlertId !== id || !res.ok || !Array.isArray(res.data)) return;
    for (const frame of res.data) {
      const figure = document.createElement("figure");
      const img = document.createElement("img");
      img.loading = "lazy";
      img.src = frame.url;
      img.alt = `frame ${frame.seq}`;
      const caption = document.createElement("figcaption");
      const offset = frame.ts - alert.start_ts;
      caption.textContent = `${offset >= 0 ? "+" : ""}${offset.toFixed(1)} s`;
      figure.append(img, caption);
      strip.append(figure);
    }
  }

  for (const button of document.querySelectorAll(".feedback button[data-label]")) {
    button.addEventListener("click", () => sendFeedback(button.dataset.label));
  }

  // "this is normal here": the alert's kind of event (cyclists, say) is accepted at this site; the
  // retraining worker learns it per place in the view, and other events beside it still alert
  $("accept-kind-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const kind = $("accept-kind").value.trim();
    if (!kind) {
      say($("feedback-message"), "Name the kind of event this site accepts, e.g. cyclist.", "error");
      return;
    }
    sendFeedback("normal", kind);
  });

  async function sendFeedback(label, category = null) {
    const alertId = state.detailAlertId;
    if (!alertId) return;
    const out = $("feedback-message");
    say(out, "sending…");
    const body = category ? { alert_id: alertId, label, category } : { alert_id: alertId, label };
    const res = await api("POST", "/api/feedback", body);
    if (res.ok) {
      const what = category ? `normal here (${category})` : label;
      say(out, `Labelled ${what}: thank you, the detector learns from it.${res.detail ? ` ${res.detail}` : ""}`, "ok");
    } else if ((res.status === 404 && res.detail === "Not Found") || res.status === 405) {
      say(out, `Feedback is not available in this version of the API (${res.status}).`, "error");
    } else {
      say(out, `Feedback not saved: ${errorText(res)}`, "error");
    }
  }

  async function openCameraHeat(id) {
    state.heatCamera = id;
    openPanel(`Heat map: ${id}`, "camera-heat");
    await showCameraHeat();
  }

  async function showCameraHeat() {
    const id = state.heatCamera;
    if (!id) return;
    const window_ = $("heat-window").value;
    const img = $("camera-heatmap");
    $("camera-heatmap-note").textContent = "loading…";
    const problem = await loadImage(img, `${cameraPath(id)}/heatmap.png?window=${encodeURIComponent(window_)}`);
    if (state.heatCamera !== id) return;
    img.hidden = problem !== null;
    $("camera-heatmap-note").textContent = problem
      ? problem
      : `Where anomalous frames were over the last ${window_}, on the latest image.`;
  }

  $("heat-window").addEventListener("change", showCameraHeat);

  // ------------------------------------------------------------------ ignore zones
  async function openZones(id) {
    openPanel(`Ignore zones: ${id}`, "zone-editor");
    say($("zone-message"), "");
    const res = await api("GET", cameraPath(id));
    if (!res.ok) {
      say($("zone-message"), errorText(res), "error");
      return;
    }
    state.zone = {
      camera: res.data,
      zones: res.data.ignore_zones.map((zone) => zone.points.map(([x, y]) => [x, y])),
      current: [],
    };
    const problem = await loadImage($("zone-image"), `${cameraPath(id)}/snapshot.jpg`);
    if (problem) say($("zone-message"), `No camera image yet (${problem}); points can still be placed.`);
    drawZones();
  }

  function drawZones() {
    const canvas = $("zone-canvas");
    const img = $("zone-image");
    const width = img.naturalWidth || 480;
    const height = img.naturalHeight || 320;
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext("2d");
    ctx.clearRect(0, 0, width, height);
    if (!state.zone) return;
    const path = (points) => {
      ctx.beginPath();
      points.forEach(([x, y], i) => (i ? ctx.lineTo(x * width, y * height) : ctx.moveTo(x * width, y * height)));
    };
    ctx.lineWidth = 2;
    for (const zone of state.zone.zones) {
      path(zone);
      ctx.closePath();
      ctx.fillStyle = "rgba(0, 0, 0, 0.45)";
      ctx.fill();
      ctx.strokeStyle = "#f0b429";
      ctx.stroke();
    }
    const current = state.zone.current;
    if (current.length) {
      path(current);
      ctx.strokeStyle = "#4ea1ff";
      ctx.stroke();
      ctx.fillStyle = "#4ea1ff";
      for (const [x, y] of current) ctx.fillRect(x * width - 3, y * height - 3, 6, 6);
    }
  }

  $("zone-canvas").addEventListener("click", (event) => {
    if (!state.zone) return;
    const box = event.target.getBoundingClientRect();
    const clamp = (value) => Math.min(Math.max(value, 0), 1);
    const x = clamp((event.clientX - box.left) / box.width);
    const y = clamp((event.clientY - box.top) / box.height);
    state.zone.current.push([Math.round(x * 1e4) / 1e4, Math.round(y * 1e4) / 1e4]);
    drawZones();
  });

  function closeCurrentZone() {
    const current = state.zone.current;
    if (current.length < 3) return false;
    state.zone.zones.push(current);
    state.zone.current = [];
    return true;
  }

  $("zone-close").addEventListener("click", () => {
    if (!state.zone) return;
    if (!closeCurrentZone()) say($("zone-message"), "A zone needs at least 3 points.", "error");
    else say($("zone-message"), "");
    drawZones();
  });

  $("zone-undo").addEventListener("click", () => {
    if (!state.zone) return;
    if (state.zone.current.length) state.zone.current.pop();
    else state.zone.zones.pop();
    drawZones();
  });

  $("zone-clear").addEventListener("click", () => {
    if (!state.zone) return;
    state.zone.zones = [];
    state.zone.current = [];
    drawZones();
  });

  // The outline being drawn, snoozed for an hour: an area that pages about something passing (works on a
  // roof), without ignoring it for good.
  $("zone-snooze").addEventListener("click", async () => {
    if (!state.zone) return;
    const out = $("zone-message");
    const points = state.zone.current;
    if (points.length < 3) {
      say(out, "Outline the area to snooze first (at least 3 points), then snooze it.", "error");
      return;
    }
    const id = state.zone.camera.id;
    const res = await api("POST", `${cameraPath(id)}/snooze`, { duration_s: 3600, zone: { points } });
    if (!res.ok) {
      say(out, `Zone not snoozed: ${errorText(res)}`, "error");
      return;
    }
    state.zone.current = [];
    drawZones();
    const until = new Date(Date.now() + 3600 * 1000).toLocaleTimeString();
    say(out, `No alert from that area until ${until}; the rest of the camera alerts as before.`, "ok");
  });

  // Zones are saved with PATCH {ignore_zones}; where the API has no PATCH, with PUT of the whole camera,
  // which is only safe when the source shown holds no masked credentials.
  $("zone-save").addEventListener("click", async () => {
    if (!state.zone) return;
    const out = $("zone-message");
    if (state.zone.current.length && !closeCurrentZone()) {
      say(out, "Close or undo the unfinished zone first (a zone needs at least 3 points).", "error");
      return;
    }
    drawZones();
    const camera = state.zone.camera;
    const zones = state.zone.zones.map((points) => ({ points }));
    let res = await api("PATCH", cameraPath(camera.id), { ignore_zones: zones });
    if (res.status === 405) {
      if (camera.source.includes("***")) {
        say(out, "Not saved: this API cannot change zones alone (PATCH) and the source's credentials are masked.", "error");
        return;
      }
      const { status, ...config } = camera;
      res = await api("PUT", cameraPath(camera.id), { ...config, ignore_zones: zones });
    }
    if (res.ok) {
      say(out, `Saved ${zones.length} zone${zones.length === 1 ? "" : "s"}; the detector ignores them from now on.`, "ok");
      state.zone.camera = res.data;
    } else {
      say(out, `Zones not saved: ${errorText(res)}`, "error");
    }
  });

  // ------------------------------------------------------------------ model version
  async function refreshModel() {
    const res = await api("GET", "/api/models");
    const badge = $("model");
    let version = null;
    let reason = "";
    if (res.ok && res.data) {
      const items = Array.isArray(res.data) ? res.data : res.data.items || res.data.versions || [];
      const serving = items.find((item) => item && item.status === "serving");
      version = res.data.current || (serving && serving.version) || null;
      const current = items.find((item) => item && item.version === version);
      reason = (current && current.reason) || "";
    }
    badge.hidden = !version;
    if (version) badge.textContent = `model ${version}`;
    // why this version serves, e.g. a camera whose view moved: "the place map silenced for camera ..."
    badge.title = reason ? `Why this model serves: ${reason}` : "";
  }

  // ------------------------------------------------------------------ start
  showTokenState();
  connectFeed(1000);
  poll(refreshCameras, CAMERAS_MS);
  poll(refreshModel, MODELS_MS);
  poll(async () => {
    await Promise.all([...state.cameras.values()].map(refreshSnapshot));
  }, SNAPSHOT_MS);
  poll(async () => {
    await Promise.all([...state.cameras.values()].map(refreshScores));
  }, SCORES_MS);
})();
