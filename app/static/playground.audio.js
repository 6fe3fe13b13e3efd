// Audio for the playground: gap-free scheduling of streamed PCM16 and a live waveform.
//
// PcmPlayer turns 16-bit little-endian mono PCM, in pieces of any size (odd byte counts
// included), into AudioBufferSources started back to back on one AudioContext clock: each
// starts at `nextTime`, the end of the one before, so chunks join sample-exactly. When the
// stream falls behind the clock (a dry run) the next piece starts a little ahead of now.
"use strict";

(() => {
  const DEFAULT_RATE = 24000;
  const START_LEAD_S = 0.06;       // first piece (and after a dry run) starts this far ahead
  const MIN_BUFFER_SAMPLES = 1024; // smaller reads are held back and joined to the next one

  class PcmPlayer {
    constructor() {
      this.ctx = null;
      this.analyser = null;
      this.sources = new Set();
      this.rate = DEFAULT_RATE;
      this.onschedule = () => {};  // called after each buffer is scheduled
      this.reset();
    }

    reset() {
      this.nextTime = 0;          // AudioContext time where the next sample plays; 0 = idle
      this.carry = null;          // an odd trailing byte, kept for the next read
      this.pending = [];          // Float32Arrays not yet scheduled (fewer than the minimum)
      this.pendingSamples = 0;
      this.scheduledSamples = 0;
      this.dryRuns = 0;           // times playback caught up with the stream
    }

    // Called from the click handler itself, so the browser lets the context play.
    ensure() {
      if (!this.ctx || this.ctx.state === "closed") {
        this.ctx = new AudioContext({ sampleRate: DEFAULT_RATE, latencyHint: "interactive" });
        this.analyser = this.ctx.createAnalyser();
        this.analyser.fftSize = 2048;
        this.analyser.connect(this.ctx.destination);
      }
      if (this.ctx.state === "suspended") this.ctx.resume();
      return this.ctx;
    }

    begin(rate) {
      this.stop();
      this.ensure();
      this.rate = rate || DEFAULT_RATE;
    }

    push(bytes) {
      if (this.carry !== null) {
        const joined = new Uint8Array(bytes.length + 1);
        joined[0] = this.carry;
        joined.set(bytes, 1);
        bytes = joined;
        this.carry = null;
      }
      const samples = bytes.length >> 1;
      if (bytes.length & 1) this.carry = bytes[bytes.length - 1];
      if (!samples) return;
      const view = new DataView(bytes.buffer, bytes.byteOffset, samples * 2);
      const floats = new Float32Array(samples);
      for (let i = 0; i < samples; i++) floats[i] = view.getInt16(i * 2, true) / 32768;
      this.pending.push(floats);
      this.pendingSamples += samples;
      if (this.pendingSamples >= MIN_BUFFER_SAMPLES) this.flush();
    }

    flush() {
      if (!this.pendingSamples) return;
      const ctx = this.ensure();
      const buffer = ctx.createBuffer(1, this.pendingSamples, this.rate);
      const channel = buffer.getChannelData(0);
      let at = 0;
      for (const part of this.pending) { channel.set(part, at); at += part.length; }
      this.pending = [];
      this.pendingSamples = 0;

      const source = ctx.createBufferSource();
      source.buffer = buffer;
      source.connect(this.analyser);
      if (this.nextTime < ctx.currentTime + 0.005) {
        if (this.scheduledSamples > 0) this.dryRuns += 1;
        this.nextTime = ctx.currentTime + START_LEAD_S;
      }
      source.start(this.nextTime);
      this.nextTime += buffer.duration;
      this.scheduledSamples += buffer.length;
      this.sources.add(source);
      source.onended = () => this.sources.delete(source);
      this.onschedule();
    }

    stop() {
      for (const source of this.sources) {
        try { source.stop(); } catch { /* never started */ }
      }
      this.sources.clear();
      this.reset();
    }

    playing() {
      return this.sources.size > 0;
    }

    // Seconds of scheduled audio not yet played.
    remaining() {
      return this.ctx && this.nextTime ? Math.max(0, this.nextTime - this.ctx.currentTime) : 0;
    }
  }

  function wavBlob(pcm, rate) {
    const header = new DataView(new ArrayBuffer(44));
    const text = (at, s) => { for (let i = 0; i < s.length; i++) header.setUint8(at + i, s.charCodeAt(i)); };
    text(0, "RIFF"); header.setUint32(4, 36 + pcm.length, true); text(8, "WAVE");
    text(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true);
    header.setUint16(22, 1, true); header.setUint32(24, rate, true);
    header.setUint32(28, rate * 2, true); header.setUint16(32, 2, true);
    header.setUint16(34, 16, true); text(36, "data"); header.setUint32(40, pcm.length, true);
    return new Blob([header.buffer, pcm], { type: "audio/wav" });
  }

  function joinBytes(chunks, total) {
    const out = new Uint8Array(total);
    let at = 0;
    for (const c of chunks) { out.set(c, at); at += c.length; }
    return out;
  }

  // A waveform with a level bar, drawn only while `player` plays.
  class Scope {
    constructor(canvas, player) {
      this.canvas = canvas;
      this.player = player;
      this.raf = 0;
      this.data = null;
      this.level = 0;  // 0..1: the RMS of the last frame drawn, -60..0 dBFS
    }

    wake() {
      if (!this.raf) this.raf = requestAnimationFrame(() => this.draw());
    }

    draw() {
      this.raf = 0;
      const { canvas, player } = this;
      const g = canvas.getContext("2d");
      const width = canvas.clientWidth * devicePixelRatio;
      const height = canvas.clientHeight * devicePixelRatio;
      if (canvas.width !== width || canvas.height !== height) {
        canvas.width = width;
        canvas.height = height;
      }
      g.clearRect(0, 0, width, height);
      const bar = Math.max(8, Math.round(width * 0.02));
      const wave = width - bar - 6;
      let rms = 0;
      g.strokeStyle = "#7fb0ff";
      g.lineWidth = Math.max(1, devicePixelRatio);
      g.beginPath();
      if (player.analyser && player.playing()) {
        if (!this.data || this.data.length !== player.analyser.fftSize) {
          this.data = new Float32Array(player.analyser.fftSize);
        }
        player.analyser.getFloatTimeDomainData(this.data);
        const step = this.data.length / wave;
        for (let x = 0; x < wave; x++) {
          const v = this.data[Math.floor(x * step)];
          const y = height / 2 - v * height / 2;
          if (x === 0) g.moveTo(x, y); else g.lineTo(x, y);
        }
        for (const v of this.data) rms += v * v;
        rms = Math.sqrt(rms / this.data.length);
      } else {
        g.moveTo(0, height / 2);
        g.lineTo(wave, height / 2);
      }
      g.stroke();
      // Level: RMS in dBFS mapped from -60..0 onto the bar's height.
      const db = rms > 0 ? 20 * Math.log10(rms) : -60;
      const level = Math.min(1, Math.max(0, (db + 60) / 60));
      g.fillStyle = level > 0.9 ? "#ff6b6b" : "#5fd38d";
      g.fillRect(width - bar, height * (1 - level), bar, height * level);
      this.level = level;
      if (player.playing()) this.wake();
    }
  }

  window.PlaygroundAudio = { DEFAULT_RATE, PcmPlayer, Scope, wavBlob, joinBytes };
})();
