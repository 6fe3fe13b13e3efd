// The playground at GET /: plain JavaScript, no build step, nothing fetched from elsewhere.
//
// Speak streams `response_format: "pcm"` with fetch and hands each piece to PcmPlayer
// (playground.audio.js) as it arrives; Live does the same with the WebSocket's audio messages.
// `window.playground` exposes the live state for people poking at it and for the browser tests.
"use strict";

(() => {
  const KEY_STORAGE = "tts-playground.api-key";
  const { DEFAULT_RATE, PcmPlayer, Scope, wavBlob, joinBytes } = window.PlaygroundAudio;
  const EXTENSIONS = { mp3: "mp3", opus: "ogg", aac: "aac", flac: "flac", wav: "wav", pcm: "pcm" };
  const GROUPS = [
    ["builtin", "Built-in speakers"],
    ["alias", "OpenAI names"],
    ["custom", "Custom voices"],
  ];

  const $ = (id) => document.getElementById(id);
  const player = new PcmPlayer();
  let scope = null;  // the waveform, once the page is there

  class ApiError extends Error {
    constructor(message, status, code, param) {
      super(message);
      this.status = status;
      this.code = code;
      this.param = param;
    }
  }

  function storedKey() {
    try { return localStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function headersWith(extra) {
    const headers = new Headers(extra || {});
    const key = storedKey();
    if (key) headers.set("Authorization", "Bearer " + key);
    return headers;
  }

  // The server answers every failure with OpenAI's envelope {"error": {"message", ...}}.
  async function apiError(response) {
    let message = `${response.status} ${response.statusText}`.trim();
    let code = null;
    let param = null;
    try {
      const body = await response.json();
      if (body && body.error && body.error.message) {
        ({ message, code = null, param = null } = body.error);
      }
    } catch { /* not JSON: keep the status line */ }
    return new ApiError(message, response.status, code, param);
  }

  async function api(path, options = {}) {
    const response = await fetch(path, { ...options, headers: headersWith(options.headers) });
    if (!response.ok) throw await apiError(response);
    return response;
  }

  function describe(err) {
    if (err instanceof ApiError) {
      if (err.status === 401) {
        return `${err.message} Enter a key under “API key” at the top of the page.`;
      }
      return err.message;
    }
    if (err && err.name === "TypeError") return `Could not reach the service (${err.message}).`;
    return String((err && err.message) || err);
  }

  function showError(el, err) {
    el.textContent = describe(err);
    el.title = err instanceof ApiError && err.code ? `HTTP ${err.status}, code ${err.code}` : "";
    el.hidden = false;
    if (err instanceof ApiError && err.status === 401) openKeyPanel();
  }

  function clearError(el) {
    el.hidden = true;
    el.textContent = "";
  }

  function openKeyPanel() {
    const panel = $("key-panel");
    panel.open = true;
    $("api-key").focus();
  }

  const voices = { data: [], loaded: false };

  function groupOf(voice) {
    if (voice.type === "builtin") return "builtin";
    if (voice.type === "alias") return "alias";
    return "custom";
  }

  function voiceValue(select) {
    const option = select.selectedOptions[0];
    if (!option || !option.value) return undefined;
    return option.dataset.custom === "1" ? { id: option.value } : option.value;
  }

  function renderVoices(selectedId) {
    const select = $("voice");
    const keep = selectedId || select.value;
    select.replaceChildren();
    for (const [group, label] of GROUPS) {
      const members = voices.data.filter((v) => groupOf(v) === group);
      if (!members.length) continue;
      const optgroup = document.createElement("optgroup");
      optgroup.label = label;
      for (const v of members) {
        const option = document.createElement("option");
        option.value = v.id;
        option.textContent = group === "alias" && v.speaker ? `${v.name} → ${v.speaker}` : v.name;
        if (group === "custom") {
          option.dataset.custom = "1";
          option.title = v.id;
        }
        optgroup.append(option);
      }
      select.append(optgroup);
    }
    if (keep && [...select.options].some((o) => o.value === keep)) select.value = keep;

    const list = $("custom-voices");
    list.replaceChildren();
    const custom = voices.data.filter((v) => groupOf(v) === "custom");
    if (!custom.length) {
      const li = document.createElement("li");
      li.className = "empty";
      li.textContent = "None yet.";
      list.append(li);
    }
    for (const v of custom) {
      const li = document.createElement("li");
      li.dataset.voiceId = v.id;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = v.name + " ";
      const id = document.createElement("code");
      id.textContent = v.id;
      name.append(id);
      const use = document.createElement("button");
      use.type = "button";
      use.textContent = "Use";
      use.setAttribute("aria-label", `Use voice ${v.name}`);
      use.onclick = () => { $("voice").value = v.id; $("text").focus(); };
      const del = document.createElement("button");
      del.type = "button";
      del.textContent = "Delete";
      del.setAttribute("aria-label", `Delete voice ${v.name}`);
      del.onclick = () => deleteVoice(v, del);
      li.append(name, use, del);
      list.append(li);
    }
  }

  async function loadVoices(selectedId) {
    try {
      const response = await api("/v1/audio/voices");
      voices.data = (await response.json()).data || [];
      voices.loaded = true;
      renderVoices(selectedId);
    } catch (err) {
      showError($("speak-error"), err);
    }
  }

  async function deleteVoice(voice, button) {
    clearError($("voice-error"));
    button.disabled = true;
    try {
      await api(`/v1/audio/voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
      $("voice-status").textContent = `Deleted “${voice.name}”.`;
      await loadVoices();
    } catch (err) {
      button.disabled = false;
      showError($("voice-error"), err);
    }
  }

  const state = {
    phase: "idle",   // idle | requesting | streaming | done | stopped | error
    bytes: 0,
    firstAudioMs: null,
    audioSeconds: 0,
    wallSeconds: 0,
    rtf: null,
    requestId: null,
    sampleRate: DEFAULT_RATE,
    error: null,
    last: null,      // {pcm, rate, body} of the last finished request, for Download
  };
  let controller = null;

  function numberField(id) {
    const raw = $(id).value.trim();
    if (raw === "") return undefined;
    const value = Number(raw);
    return Number.isFinite(value) ? value : undefined;
  }

  function speechBody() {
    const body = {
      input: $("text").value,
      voice: voiceValue($("voice")),
      response_format: "pcm",
      stream: true,
      speed: Number($("speed").value),
      temperature: Number($("temperature").value),
      playback_speed: numberField("playback-speed"),
      playback_overlap_speed: numberField("overlap-speed"),
      max_tokens: numberField("max-tokens"),
    };
    for (const k of Object.keys(body)) if (body[k] === undefined) delete body[k];
    return body;
  }

  function fmtMs(ms) { return `${Math.round(ms)} ms`; }
  function fmtBytes(n) { return n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(2)} MiB`; }

  function showStats() {
    $("stat-latency").textContent = state.firstAudioMs === null ? "–" : fmtMs(state.firstAudioMs);
    $("stat-duration").textContent = state.bytes ? `${state.audioSeconds.toFixed(2)} s` : "–";
    $("stat-rtf").textContent = state.rtf === null ? "–" : state.rtf.toFixed(2);
    $("stat-bytes").textContent = state.bytes ? fmtBytes(state.bytes) : "–";
  }

  function setBusy(busy) {
    $("speak").disabled = busy;
    $("stop").disabled = !busy && !player.playing();
    $("download").disabled = busy || !state.last;
  }

  function setStatus(text) { $("speak-status").textContent = text; }

  async function speak() {
    stopSpeaking();
    clearError($("speak-error"));
    player.ensure();  // inside the click: the browser allows this context to play
    const body = speechBody();
    Object.assign(state, { phase: "requesting", bytes: 0, firstAudioMs: null, audioSeconds: 0,
                           wallSeconds: 0, rtf: null, requestId: null, error: null });
    showStats();
    setStatus("Requesting…");
    const own = new AbortController();
    controller = own;
    setBusy(true);
    const started = performance.now();
    const chunks = [];
    try {
      const response = await api("/v1/audio/speech", {
        method: "POST", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body), signal: own.signal,
      });
      state.requestId = response.headers.get("X-Request-Id");
      state.sampleRate = Number(response.headers.get("X-Sample-Rate")) || DEFAULT_RATE;
      if (response.headers.get("X-TTS-Demo") === "true") $("demo-banner").hidden = false;
      player.begin(state.sampleRate);
      state.phase = "streaming";
      setStatus("Streaming…");
      const reader = response.body.getReader();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!value || !value.length) continue;
        if (state.firstAudioMs === null) state.firstAudioMs = performance.now() - started;
        chunks.push(value);
        state.bytes += value.length;
        state.audioSeconds = Math.floor(state.bytes / 2) / state.sampleRate;
        player.push(value);
        showStats();
      }
      player.flush();
      state.wallSeconds = (performance.now() - started) / 1000;
      state.rtf = state.audioSeconds > 0 ? state.wallSeconds / state.audioSeconds : null;
      state.last = { pcm: joinBytes(chunks, state.bytes), rate: state.sampleRate, body };
      state.phase = "done";
      const dry = player.dryRuns ? ` Playback ran dry ${player.dryRuns}× (the stream fell behind real time).` : "";
      setStatus(state.bytes ? `Done in ${state.wallSeconds.toFixed(2)} s.${dry}` : "Done: no audio came back.");
      showStats();
    } catch (err) {
      if (own.signal.aborted) {
        state.phase = "stopped";
        setStatus("Stopped.");
      } else {
        state.phase = "error";
        state.error = describe(err);
        player.stop();
        setStatus("");
        showError($("speak-error"), err);
      }
    } finally {
      if (controller === own) controller = null;
      setBusy(false);
      watchPlayback();
    }
  }

  // Keeps Stop enabled while scheduled audio is still playing after the stream ended.
  function watchPlayback() {
    if (controller) return;
    $("stop").disabled = !player.playing();
    if (player.playing()) setTimeout(watchPlayback, 200);
  }

  function stopSpeaking() {
    if (controller) controller.abort();  // the server sees the disconnect and aborts the engine
    controller = null;
    player.stop();
  }

  async function download() {
    const last = state.last;
    if (!last) return;
    const format = $("format").value;
    const stamp = new Date().toISOString().replace(/[:.]/g, "-").slice(0, 19);
    clearError($("speak-error"));
    let blob;
    if (format === "pcm") {
      blob = new Blob([last.pcm], { type: "audio/pcm" });
    } else if (format === "wav") {
      blob = wavBlob(last.pcm, last.rate);
    } else {
      $("download").disabled = true;
      setStatus(`Encoding ${format} on the server…`);
      try {
        const response = await api("/v1/audio/speech", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ ...last.body, response_format: format, stream: false }),
        });
        blob = await response.blob();
      } catch (err) {
        showError($("speak-error"), err);
        setStatus("");
        return;
      } finally {
        $("download").disabled = false;
      }
    }
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = `speech-${stamp}.${EXTENSIONS[format] || format}`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    setStatus(`Saved ${a.download} (${fmtBytes(blob.size)}).`);
  }

  const live = {
    socket: null,
    phase: "closed",  // closed | connecting | ready | finishing | complete
    sent: "",
    messages: 0,
    audioMessages: 0,
    bytes: 0,
    sampleRate: DEFAULT_RATE,
    sentenceEnds: [],  // times pieces carrying . ! ? were sent
    latencyMs: null,
    error: null,
    userClosed: false,
    cancelling: false, // between sending cancel and the server's "cancelled"
  };

  function liveUrl() {
    const url = new URL("/ws/synthesize", location.href);
    url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
    const key = storedKey();
    if (key) url.searchParams.set("api_key", key);  // browsers cannot set headers on a WebSocket
    return url.href;
  }

  function liveStatus(text) { $("ws-status").textContent = text; }

  function liveControls() {
    const open = live.socket !== null;
    $("ws-connect").textContent = open ? "Disconnect" : "Connect";
    $("ws-finish").disabled = live.phase !== "ready";
    $("ws-cancel").disabled = !open;
    $("ws-text").disabled = live.phase !== "ready";
    $("ws-latency").textContent = live.latencyMs === null ? "–" : fmtMs(live.latencyMs);
    $("ws-duration").textContent = live.bytes ? `${(Math.floor(live.bytes / 2) / live.sampleRate).toFixed(2)} s` : "–";
    $("ws-messages").textContent = live.messages ? `${live.audioMessages} audio / ${live.messages}` : "–";
  }

  function liveSend(message) {
    if (live.socket && live.socket.readyState === WebSocket.OPEN) {
      live.socket.send(JSON.stringify(message));
    }
  }

  function connectLive() {
    if (live.socket) { disconnectLive(); return; }
    clearError($("ws-error"));
    player.ensure();
    Object.assign(live, { phase: "connecting", sent: "", messages: 0, audioMessages: 0, bytes: 0,
                          sentenceEnds: [], latencyMs: null, error: null, userClosed: false,
                          cancelling: false });
    $("ws-text").value = "";
    let socket;
    try {
      socket = new WebSocket(liveUrl());
    } catch (err) {
      live.phase = "closed";
      showError($("ws-error"), err);
      return;
    }
    live.socket = socket;
    let opened = false;
    liveStatus("Connecting…");
    socket.onopen = () => {
      opened = true;
      const config = { voice: voiceValue($("voice")), sample_rate: DEFAULT_RATE,
                       temperature: Number($("temperature").value),
                       speed: Number($("speed").value),
                       playback_speed: numberField("playback-speed"),
                       playback_overlap_speed: numberField("overlap-speed") };
      for (const k of Object.keys(config)) if (config[k] === undefined) delete config[k];
      socket.send(JSON.stringify(config));
      liveStatus("Connected; waiting for the server to be ready…");
    };
    socket.onmessage = (event) => onLiveMessage(event.data);
    socket.onclose = (event) => {
      if (live.socket !== socket) return;
      live.socket = null;
      const was = live.phase;
      live.phase = "closed";
      if (!opened) {
        live.error = "Could not open /ws/synthesize: the server refused the connection (no such endpoint, or a missing or wrong API key).";
        $("ws-error").textContent = live.error;
        $("ws-error").hidden = false;
        liveStatus("Not connected.");
      } else if (was === "complete" || live.userClosed) {
        liveStatus(was === "complete" ? "Complete." : "Disconnected.");
      } else {
        liveStatus(`Connection closed (code ${event.code}${event.reason ? ": " + event.reason : ""}).`);
      }
      liveControls();
    };
    liveControls();
  }

  function onLiveMessage(raw) {
    let message;
    try { message = JSON.parse(raw); } catch { return; }
    live.messages += 1;
    switch (message.type) {
      case "ready":
        live.phase = "ready";
        live.sampleRate = Number(message.sample_rate) || DEFAULT_RATE;
        player.begin(live.sampleRate);
        liveStatus("Ready: type, and each sentence is spoken when it ends.");
        liveControls();
        $("ws-text").focus();
        break;
      case "audio": {
        if (live.cancelling) break;  // audio of the cancelled text, already on its way
        const binary = atob(message.data || "");
        const bytes = new Uint8Array(binary.length);
        for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
        const rate = Number(message.sample_rate) || live.sampleRate;
        if (rate !== player.rate) { player.flush(); player.rate = rate; }
        // Audio messages carry no sentence number, so only the first one can be paired
        // with the text that caused it.
        if (live.latencyMs === null && live.sentenceEnds.length) {
          live.latencyMs = performance.now() - live.sentenceEnds[0];
        }
        live.audioMessages += 1;
        live.bytes += bytes.length;
        player.push(bytes);
        player.flush();
        liveStatus("Speaking…");
        break;
      }
      case "keepalive":
        break;
      case "cancelled":
        live.cancelling = false;
        liveStatus("Cancelled; type on to go on.");
        break;
      case "complete":
        live.phase = "complete";
        liveStatus("Complete.");
        if (live.socket) live.socket.close(1000);
        break;
      case "error": {
        const text = message.message || (message.error && message.error.message) || "The server reported an error.";
        live.error = text;
        $("ws-error").textContent = text;
        $("ws-error").hidden = false;
        break;
      }
      default:
        break;
    }
    liveControls();
  }

  function onLiveInput() {
    if (live.phase !== "ready") return;
    const value = $("ws-text").value;
    if (value.startsWith(live.sent)) {
      const piece = value.slice(live.sent.length);
      if (piece) {
        live.cancelling = false;
        liveSend({ text: piece });
        if (/[.!?…。]/.test(piece)) live.sentenceEnds.push(performance.now());
      }
    }
    // An edit inside text already sent cannot be taken back; carry on from the new text.
    live.sent = value;
  }

  function finishLive() {
    liveSend({ type: "end_of_stream" });
    live.phase = "finishing";
    liveStatus("Finishing: speaking what is left…");
    liveControls();
  }

  function cancelLive() {
    liveSend({ type: "cancel" });
    live.cancelling = true;
    live.sentenceEnds = [];
    player.stop();
    player.begin(live.sampleRate);
    liveStatus("Cancelling…");
  }

  function disconnectLive() {
    live.userClosed = true;
    if (live.socket) live.socket.close(1000);
    player.stop();
  }

  const recording = { recorder: null, blob: null, stream: null };

  function setupRecorder() {
    if (!window.MediaRecorder || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) return;
    $("record-row").hidden = false;
    $("record").onclick = toggleRecording;
  }

  async function toggleRecording() {
    const button = $("record");
    if (recording.recorder) {
      recording.recorder.stop();
      return;
    }
    clearError($("voice-error"));
    try {
      recording.stream = await navigator.mediaDevices.getUserMedia({ audio: true });
    } catch (err) {
      showError($("voice-error"), new Error(`No microphone (${err.message}). Upload a file instead.`));
      return;
    }
    const parts = [];
    const recorder = new MediaRecorder(recording.stream);
    recorder.ondataavailable = (e) => { if (e.data.size) parts.push(e.data); };
    recorder.onstop = () => {
      recording.stream.getTracks().forEach((t) => t.stop());
      recording.blob = new Blob(parts, { type: recorder.mimeType || "audio/webm" });
      recording.recorder = null;
      $("voice-file").value = "";
      const preview = $("record-preview");
      preview.src = URL.createObjectURL(recording.blob);
      preview.hidden = false;
      button.textContent = "● Record again";
      button.classList.remove("recording");
      $("record-status").textContent = `Recorded ${fmtBytes(recording.blob.size)}; it will be the reference clip.`;
    };
    recorder.start();
    recording.recorder = recorder;
    button.textContent = "■ Stop recording";
    button.classList.add("recording");
    $("record-status").textContent = "Recording… read your transcript aloud.";
  }

  function recordingName(blob) {
    const type = blob.type || "";
    const ext = type.includes("ogg") ? "ogg" : type.includes("mp4") ? "m4a" : "webm";
    return `recording.${ext}`;
  }

  async function createVoice(event) {
    event.preventDefault();
    const error = $("voice-error");
    clearError(error);
    const file = $("voice-file").files[0];
    const sample = file || recording.blob;
    if (!sample) {
      showError(error, new Error("Choose a reference clip (or record one) first."));
      return;
    }
    const form = new FormData();
    form.append("audio_sample", sample, file ? file.name : recordingName(sample));
    form.append("name", $("voice-name").value.trim());
    form.append("reference_text", $("voice-text").value.trim());
    const button = $("voice-create");
    button.disabled = true;
    $("voice-status").textContent = "Encoding the clip…";
    try {
      const response = await api("/v1/audio/voices", { method: "POST", body: form });
      const voice = await response.json();
      $("voice-status").textContent = `Created “${voice.name}” (${voice.id}); it is selected in the voice picker.`;
      $("voice-form").reset();
      recording.blob = null;
      $("record-preview").hidden = true;
      $("record-status").textContent = "";
      $("record").textContent = "● Record";
      await loadVoices(voice.id);
    } catch (err) {
      $("voice-status").textContent = "";
      showError(error, err);
    } finally {
      button.disabled = false;
    }
  }

  async function checkHealth() {
    try {
      const response = await fetch("/health", { headers: headersWith() });
      const health = await response.json();
      state.health = health;
      if (health.demo) $("demo-banner").hidden = false;
      if (health.status !== "ok") setStatus("The service reports it is unavailable (engine unreachable?).");
    } catch { /* the page still works; speech requests will say what is wrong */ }
  }

  function bindRange(id, digits, suffix) {
    const input = $(id);
    const out = $(id + "-out");
    const show = () => { out.textContent = Number(input.value).toFixed(digits) + suffix; };
    input.addEventListener("input", show);
    show();
  }

  function init() {
    scope = new Scope($("scope"), player);
    player.onschedule = () => scope.wake();
    scope.draw();
    bindRange("speed", 2, "×");
    bindRange("temperature", 2, "");

    $("api-key").value = storedKey();
    $("key-form").addEventListener("submit", (event) => {
      event.preventDefault();
      try { localStorage.setItem(KEY_STORAGE, $("api-key").value.trim()); } catch { /* private mode */ }
      clearError($("speak-error"));
      $("key-panel").open = false;
      loadVoices();
    });
    $("key-clear").addEventListener("click", () => {
      try { localStorage.removeItem(KEY_STORAGE); } catch { /* private mode */ }
      $("api-key").value = "";
    });

    $("speak").addEventListener("click", speak);
    $("stop").addEventListener("click", () => { stopSpeaking(); $("stop").disabled = true; });
    $("download").addEventListener("click", download);
    $("text").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) speak();
    });

    $("ws-connect").addEventListener("click", connectLive);
    $("ws-finish").addEventListener("click", finishLive);
    $("ws-cancel").addEventListener("click", cancelLive);
    $("ws-text").addEventListener("input", onLiveInput);

    $("voice-form").addEventListener("submit", createVoice);
    $("voice-file").addEventListener("change", () => { recording.blob = null; $("record-preview").hidden = true; });
    setupRecorder();

    checkHealth();
    loadVoices();
  }

  window.playground = { state, live, player, voices, get scope() { return scope; } };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
