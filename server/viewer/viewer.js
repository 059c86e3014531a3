// R3D viewer: lists sessions, and for one shows the latest colour and depth frames, the current action, the
// anticipated actions on a moving timeline and the modality-health signal. Data: REST (docs/protocol.md) with
// long-polled predictions (GET /v1/sessions/{id}/prediction?after=N&timeout_s=T) and the viewer's preview images.
// Query parameters: ?session=ID selects a session, ?api_key=KEY authenticates (sent as the X-API-Key header).
// A session that ends (the client said bye, or it expired) stays on screen and in the list, marked "ended", until
// another stream starts. A missing colour modality is shown as such, never as a stale or black picture: "no colour
// camera" for a depth-only stream (hello color false), "colour missing" when an RGB-D stream's frames stop carrying
// colour (modality health rgb_status "missing").
"use strict";

(() => {
  const params = new URLSearchParams(location.search);
  const apiKey = params.get("api_key");
  const API = "/v1";
  const PREVIEW = new URL("api/", new URL(".", location.href)).pathname; // /viewer/api/
  const HISTORY_S = 30; // seconds of current actions kept for the timeline
  const IMAGE_HZ = 5;

  const $ = (id) => document.getElementById(id);
  const state = {
    selected: params.get("session"),
    userSelected: Boolean(params.get("session")),
    after: -1,
    poll: null, // AbortController of the running long poll
    history: [], // {ts, label} of current actions, newest last
    health: [], // {ts, fused, rgb, depth}
    latest: null, // the last AnticipationOut
    receivedAt: 0,
    horizon: 8,
    lastImages: -Infinity,  // the first prediction always fetches the previews
    classes: [],
    info: null, // the selected session as the server last listed it
    ended: null, // the session on screen after it ended: its last listing
  };

  function headers() {
    return apiKey ? { "X-API-Key": apiKey } : {};
  }

  async function getJSON(path, signal) {
    const r = await fetch(path, { headers: headers(), signal });
    if (r.status === 204) return null;
    if (!r.ok) {
      let msg = r.statusText;
      try { msg = (await r.json()).message || msg; } catch (e) { /* not JSON */ }
      throw new Error(`${r.status} ${msg}`);
    }
    return r.json();
  }

  function setStatus(s, text) {
    const el = $("status");
    el.dataset.state = s;
    el.textContent = text || s;
  }

  // Stable colour per action name (the same hue for the same label everywhere on the page).
  function colour(label, alpha = 1) {
    if (!label || label === "NONE" || label === "background") return `rgba(160,160,160,${alpha})`;
    let h = 0;
    for (const c of label) h = (h * 31 + c.charCodeAt(0)) >>> 0;
    return `hsla(${h % 360}, 70%, 55%, ${alpha})`;
  }

  // --- sessions -------------------------------------------------------------------------------------------------

  async function refreshSessions() {
    let list;
    try {
      list = await getJSON(`${API}/sessions`);
    } catch (e) {
      setStatus("error", `server unreachable: ${e.message}`);
      return;
    }
    const ul = $("sessions");
    ul.replaceChildren();
    const sessions = list.sessions.filter((s) => s.state !== "closed");
    const chosen = sessions.find((s) => s.id === state.selected);
    if (chosen) state.info = chosen;
    else if (state.info && state.info.id === state.selected) endSession(state.selected); // gone from the server
    const ended = state.ended && !sessions.some((s) => s.id === state.ended.id) ? state.ended : null;
    if (!sessions.length && !ended) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "no session yet";
      ul.append(li);
      if (!state.latest) setStatus("waiting", "waiting for a stream");
    }
    for (const s of sessions) ul.append(sessionItem(s, s.state, s.id === state.selected));
    if (ended) ul.append(sessionItem(ended, "ended", true));
    const live = sessions.find((s) => s.state === "attached") || (state.ended ? null : sessions[0]);
    if (!chosen && !state.userSelected && live) {
      select(live.id, live); // after an ended stream, only a streaming session replaces it
    } else if (chosen) {
      if (!state.poll) select(chosen.id, chosen); // chosen by ?session=ID: start following it
      $("session-counters").textContent = counterText(chosen.counters) + ` · queue ${chosen.queue_depth}`;
    }
  }

  function sessionItem(s, label, selected) {
    const li = document.createElement("li");
    const b = document.createElement("button");
    b.dataset.sessionId = s.id;
    b.className = (selected ? "selected " : "") + (label === "ended" ? "ended" : "");
    b.innerHTML = `${s.id.slice(0, 12)}<small></small>`;
    b.querySelector("small").textContent =
      `${label} · ${s.stream.camera} · ${s.stream.width}x${s.stream.height}` +
      `${s.stream.color === false ? " · depth only" : ""} · ${s.predictions} predictions`;
    if (label !== "ended") b.addEventListener("click", () => { state.userSelected = true; select(s.id, s); });
    li.append(b);
    return li;
  }

  // The session on screen is gone from the server (closed by its client, or expired): keep its last view, say so.
  function endSession(id) {
    if (state.poll) state.poll.abort();
    const info = state.info && state.info.id === id ? state.info : null;
    const predictions = state.latest ? state.latest.seq + 1 : info ? info.predictions : 0;
    state.ended = info ? { ...info, predictions } : { id, predictions, stream: { camera: "?", width: "?", height: "?" } };
    Object.assign(state, { selected: null, userSelected: false, poll: null, info: null });
    $("session-title").textContent = `session ${id} (ended)`;
    setStatus("ended", `stream ended · session ${id.slice(0, 12)} closed after ${predictions} predictions`);
  }

  function counterText(c) {
    return `received ${c.received} · used ${c.accepted} · resampled out ${c.resampled_out} · ` +
      `dropped ${c.dropped} · rejected ${c.rejected}`;
  }

  function select(id, info) {
    if (state.poll) state.poll.abort();
    Object.assign(state, { selected: id, after: -1, history: [], health: [], latest: null, poll: null, ended: null,
      info });
    $("session-view").hidden = false;
    $("session-title").textContent = `session ${id}`;
    renderStreams(null); // a depth-only stream says so before its first prediction
    for (const b of document.querySelectorAll("#sessions button")) {
      b.className = b.dataset.sessionId === id ? "selected" : "";
    }
    const url = new URL(location.href);
    url.searchParams.set("session", id);
    history.replaceState(null, "", url);
    pollPredictions(id);
  }

  // --- predictions ----------------------------------------------------------------------------------------------

  async function pollPredictions(id) {
    const ctl = new AbortController();
    state.poll = ctl;
    setStatus("waiting", "connected, waiting for predictions");
    while (!ctl.signal.aborted && state.selected === id) {
      try {
        const q = state.after >= 0 ? `after=${state.after}&` : "";
        const p = await getJSON(`${API}/sessions/${id}/prediction?${q}timeout_s=5`, ctl.signal);
        if (p) {
          state.after = p.seq;
          onPrediction(p);
          setStatus("live", `live · prediction #${p.seq}`);
        } else if (!state.latest) {
          setStatus("waiting", "connected, waiting for predictions");
        }
      } catch (e) {
        if (ctl.signal.aborted) return;
        const gone = String(e.message).startsWith("404");
        if (gone && (state.latest || (state.info && state.info.id === id))) { endSession(id); refreshSessions(); return; }
        setStatus("error", e.message);
        await new Promise((r) => setTimeout(r, 1000));
        if (gone) { state.selected = null; state.userSelected = false; return; }
      }
    }
  }

  function onPrediction(p) {
    state.latest = p;
    state.receivedAt = performance.now();
    state.history.push({ ts: p.frame_ts, label: p.current.label });
    while (state.history.length && state.history[0].ts < p.frame_ts - HISTORY_S) state.history.shift();
    if (p.modality) {
      state.health.push({ ts: p.frame_ts, fused: p.modality.erank_fused, rgb: p.modality.erank_rgb,
        depth: p.modality.erank_depth, balance: p.modality.balance });
      if (state.health.length > 300) state.health.shift();
    }
    const cur = p.current;
    $("current-action").textContent = cur.label;
    $("current-action").style.color = colour(cur.label);
    $("current-prob").textContent = `p = ${cur.probability.toFixed(2)} · frame ${p.frame_seq} at ${p.frame_ts.toFixed(2)} s`;
    renderProbabilities(cur.probabilities);
    renderFuture(p.future);
    renderHealth(p.modality);
    const l = p.latency;
    $("latency").textContent = `model ${p.model_id} · window ${p.window.frames} frames ` +
      `(${(p.window.end_ts - p.window.start_ts).toFixed(1)} s) · latency ${l.frame_to_prediction_ms.toFixed(1)} ms ` +
      `(queue ${l.queue_ms.toFixed(1)}, encode ${l.encode_ms.toFixed(1)}, anticipate ${l.anticipate_ms.toFixed(1)})`;
    $("session-counters").textContent = counterText(p.counters);
    const now = performance.now();
    if (now - state.lastImages > 1000 / IMAGE_HZ) {
      state.lastImages = now;
      refreshImages(p.session_id);
    }
  }

  function renderProbabilities(probs) {
    const ol = $("probabilities");
    ol.replaceChildren();
    const top = Object.entries(probs).sort((a, b) => b[1] - a[1]).slice(0, 5);
    for (const [label, pr] of top) {
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = label;
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, pr * 100)}%`;
      bar.style.background = colour(label);
      const val = document.createElement("span");
      val.textContent = pr.toFixed(2);
      li.append(name, bar, val);
      ol.append(li);
    }
  }

  function renderFuture(future) {
    const ol = $("future-list");
    ol.replaceChildren();
    if (!future.length) {
      const li = document.createElement("li");
      li.className = "muted";
      li.textContent = "no anticipated action";
      ol.append(li);
    }
    for (const f of future) {
      const li = document.createElement("li");
      li.style.background = colour(f.label, 0.35 + 0.65 * f.probability);
      li.textContent = `${f.label} in ${f.start_s.toFixed(1)} s for ${f.duration_s.toFixed(1)} s (p ${f.probability.toFixed(2)})`;
      ol.append(li);
    }
  }

  function fmt(v) { return v === null || v === undefined ? "n/a" : v.toFixed(2); }

  // What each stream verdict (ModalityHealth rgb_status / depth_status, docs/protocol.md) means to a person.
  const STREAM_WORDS = {
    ok: "ok", blank: "blank (no picture)", noise: "noise", static: "frozen (static)",
    absent: "no colour camera", missing: "missing (frames arrive without colour)",
    unused: "not used (depth-only model)",
  };

  // The colour stream's state: "absent" for a depth-only stream (known from its hello before any health report),
  // else the latest health verdict, else null.
  function colourState(m) {
    if (state.info && state.info.stream && state.info.stream.color === false) return "absent";
    return m && m.rgb_status ? m.rgb_status : null;
  }

  function renderStreams(m) {
    const el = $("streams");
    el.replaceChildren();
    const colourNow = colourState(m);
    for (const [name, status] of [["colour", colourNow], ["depth", m ? m.depth_status : null]]) {
      if (!status) continue;
      const span = document.createElement("span");
      span.dataset.stream = name;
      span.dataset.status = status;
      span.textContent = `${name}: ${STREAM_WORDS[status] || status}`;
      if (el.childElementCount) el.append(" · ");
      el.append(span);
    }
    // no picture to show for colour that is not there: say so in its place
    const gone = colourNow === "absent" || colourNow === "missing";
    $("color-img").hidden = gone;
    $("color-missing").hidden = !gone;
    $("color-missing").textContent = colourNow === "absent" ? "no colour camera (depth-only stream)"
      : "colour missing: the stream's frames arrive without colour";
  }

  function renderHealth(m) {
    const el = $("health");
    if (!m) { el.textContent = "not reported by this model"; renderStreams(null); return; }
    let verdict = "";
    if (m.balance !== null && m.balance !== undefined) {
      verdict = m.balance < 0.5 ? " · RGB collapsed?" : m.balance > 2 ? " · depth collapsed?" : " · balanced";
    }
    el.textContent = `fused ${fmt(m.erank_fused)} · RGB ${fmt(m.erank_rgb)} · depth ${fmt(m.erank_depth)} · ` +
      `balance ${fmt(m.balance)} over ${m.frames} frames${verdict}`;
    renderStreams(m);
    drawHealth();
  }

  async function refreshImages(id) {
    for (const [elId, name] of [["color-img", "color.jpg"], ["depth-img", "depth.jpg"]]) {
      if ($(elId).hidden) continue; // colour absent or missing: nothing to fetch
      try {
        const r = await fetch(`${PREVIEW}sessions/${id}/${name}`, { headers: headers() });
        if (!r.ok) continue;
        const url = URL.createObjectURL(await r.blob());
        const img = $(elId);
        const old = img.src;
        img.onload = () => { if (old.startsWith("blob:")) URL.revokeObjectURL(old); };
        img.src = url;
      } catch (e) { /* next prediction retries */ }
    }
  }

  // --- drawing --------------------------------------------------------------------------------------------------

  function drawTimeline() {
    const cv = $("timeline");
    const ctx = cv.getContext("2d");
    const w = cv.width, h = cv.height;
    ctx.clearRect(0, 0, w, h);
    const p = state.latest;
    if (p) {
      const horizon = Math.max(state.horizon, ...p.future.map((f) => f.start_s + f.duration_s));
      const past = Math.min(HISTORY_S, Math.max(4, 1.5 * horizon)); // past on the left, horizon on the right
      const span = past + horizon;
      const x0 = (past / span) * (w - 24); // the "now" line
      const xs = (dt) => x0 + (dt / span) * (w - 24);
      // smooth motion between predictions: shift by the wall time since the last one (at most half a second)
      const drift = Math.min((performance.now() - state.receivedAt) / 1000, 0.5);
      const hist = state.history;
      for (let i = 0; i < hist.length; i++) {
        const a = hist[i].ts - p.frame_ts - drift;
        const b = (i + 1 < hist.length ? hist[i + 1].ts : p.frame_ts) - p.frame_ts - drift;
        if (b < -past) continue;
        ctx.fillStyle = colour(hist[i].label);
        const xa = Math.floor(xs(Math.max(a, -past))), xb = Math.ceil(xs(b));
        ctx.fillRect(xa, 28, Math.max(1, xb - xa), 36);
      }
      p.future.forEach((f, i) => {
        ctx.fillStyle = colour(f.label, 0.35 + 0.65 * f.probability);
        const a = xs(f.start_s - drift), b = xs(f.start_s + f.duration_s - drift);
        ctx.fillRect(a, 28 + (i % 2) * 4, Math.max(1, b - a), 36);
        ctx.fillStyle = "#000";
        ctx.font = "12px system-ui";
        if (b - a > 40) ctx.fillText(f.label, a + 4, 50);
      });
      ctx.strokeStyle = "#fff";
      ctx.beginPath(); ctx.moveTo(x0, 18); ctx.lineTo(x0, 74); ctx.stroke();
      ctx.fillStyle = "#8d96a0";
      ctx.font = "11px system-ui";
      const step = span > 24 ? 4 : span > 12 ? 2 : 1;
      for (let t = -Math.floor(past / step) * step; t <= horizon; t += step) {
        const x = xs(t);
        ctx.fillRect(x, 80, 1, 5);
        ctx.fillText(`${t > 0 ? "+" : ""}${t}s`, Math.max(0, x - 8), 98);
      }
      ctx.fillText("now", x0 - 10, 14);
    }
    requestAnimationFrame(drawTimeline);
  }

  function drawHealth() {
    const cv = $("health-chart");
    const ctx = cv.getContext("2d");
    const w = cv.width, h = cv.height;
    ctx.clearRect(0, 0, w, h);
    const pts = state.health;
    if (pts.length < 2) return;
    const max = Math.max(1, ...pts.flatMap((p) => [p.fused, p.rgb, p.depth].filter((v) => v !== null)));
    const t0 = pts[0].ts, t1 = pts[pts.length - 1].ts || t0 + 1;
    const series = [["fused", "#e8eaed"], ["rgb", "#ef5350"], ["depth", "#42a5f5"]];
    for (const [key, col] of series) {
      ctx.strokeStyle = col;
      ctx.beginPath();
      let started = false;
      for (const p of pts) {
        if (p[key] === null || p[key] === undefined) continue;
        const x = ((p.ts - t0) / Math.max(t1 - t0, 1e-6)) * (w - 40);
        const y = h - 6 - (p[key] / max) * (h - 12);
        if (started) ctx.lineTo(x, y); else { ctx.moveTo(x, y); started = true; }
      }
      ctx.stroke();
      ctx.fillStyle = col;
      ctx.font = "11px system-ui";
      ctx.fillText(key, w - 36, 12 + 14 * series.findIndex((s) => s[0] === key));
    }
  }

  async function loadModel() {
    try {
      const m = await getJSON(`${API}/model`);
      state.horizon = m.horizon_s;
      state.classes = m.classes;
      $("model-info").textContent = `model ${m.model_id} · ${m.backend} · ${m.classes.length} classes · ` +
        `window ${m.window_s} s · horizon ${m.horizon_s} s · ${m.fps} fps`;
    } catch (e) {
      $("model-info").textContent = `model: ${e.message}`;
    }
  }

  loadModel();
  refreshSessions();
  setInterval(refreshSessions, 2000);
  requestAnimationFrame(drawTimeline);
})();
