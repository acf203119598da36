// comagen's live sound: one SoundFont2 synth in the page, behind one small API (window.comagenSynth)
// that the live playback during Generate and the Play tab code against. The library and the soundfont
// come from this app's own host (studio/web.py); without them `available` stays false, `message`
// says why, the page says so once, and every call is a harmless no-op (as are calls before `ready`).
// `at` is a time on the audio clock (now()); 0 or a past time means at once.
(() => {
  "use strict";
  const cfg = window.COMAGEN_WEB || {};
  const CHANNEL = 0;
  const SUSTAIN = 64;
  const METER_MS = 50;  // how often the analyser's peak is read into stats().level
  const counts = { noteOn: 0, noteOff: 0, level: 0 };
  const listeners = [];
  let ctx = null;
  let engine = null;

  function loadScript(src) {
    return new Promise((resolve, reject) => {
      const el = document.createElement("script");
      el.src = src;
      el.onload = resolve;
      el.onerror = () => reject(new Error(`${src} is not served (run scripts/setup.sh with npm installed)`));
      document.head.appendChild(el);
    });
  }

  async function fetchBytes(url) {
    const res = await fetch(url);
    if (!res.ok) throw new Error(`${url}: HTTP ${res.status}`);
    return res.arrayBuffer();
  }

  // js-synthesizer: FluidSynth in an AudioWorklet; timed events go through FluidSynth's own
  // sequencer, which runs on the synth's sample clock (so on the audio clock, less a fixed offset).
  async function fluidEngine(context, soundfont) {
    const lib = cfg.base + "js-synthesizer/";
    await context.audioWorklet.addModule(lib + "externals/libfluidsynth-2.4.6.js");
    await context.audioWorklet.addModule(lib + "dist/js-synthesizer.worklet.min.js");
    const synth = new window.JSSynth.AudioWorkletNodeSynthesizer();
    synth.init(context.sampleRate);
    const node = synth.createAudioNode(context);
    await synth.loadSFont(soundfont);
    const seq = await synth.createSequencer();
    const client = await seq.registerSynthesizer(synth);
    const offset = context.currentTime - (await seq.getTick()) / 1000;  // audio time of tick 0
    const at = (ev, time) => seq.sendEventToClientAt(client, ev, Math.round((time - offset) * 1000), true);
    return {
      connect: (dest) => node.connect(dest),
      noteOn: (p, v, t) => (t ? at({ type: "noteon", channel: CHANNEL, key: p, vel: v }, t)
        : synth.midiNoteOn(CHANNEL, p, v)),
      noteOff: (p, t) => (t ? at({ type: "noteoff", channel: CHANNEL, key: p }, t) : synth.midiNoteOff(CHANNEL, p)),
      control: (c, v, t) => (t ? at({ type: "controlchange", channel: CHANNEL, control: c, value: v }, t)
        : synth.midiControl(CHANNEL, c, v)),
      stopAll: () => { seq.removeAllEvents(); synth.midiAllSoundsOff(CHANNEL); },
    };
  }

  // spessasynth_lib: a JavaScript SoundFont synth in an AudioWorklet that schedules by audio time itself.
  async function spessaEngine(context, soundfont) {
    const lib = cfg.base + "spessasynth_lib/dist/";
    await context.audioWorklet.addModule(lib + "spessasynth_processor.min.js");
    const { WorkletSynthesizer } = await import(lib + "index.js");
    const synth = new WorkletSynthesizer(context);
    await synth.soundBankManager.addSoundBank(soundfont, "main");
    await synth.isReady;
    const opts = (t) => (t ? { time: t } : undefined);
    return {
      connect: (dest) => synth.connect(dest),
      noteOn: (p, v, t) => synth.noteOn(CHANNEL, p, v, opts(t)),
      noteOff: (p, t) => synth.noteOff(CHANNEL, p, opts(t)),
      control: (c, v, t) => synth.controllerChange(CHANNEL, c, v, opts(t)),
      stopAll: () => synth.stopAll(true),
    };
  }

  const ENGINES = { fluid: fluidEngine, spessa: spessaEngine };

  function meter(analyser) {
    const buf = new Float32Array(analyser.fftSize);
    setInterval(() => {
      analyser.getFloatTimeDomainData(buf);
      for (const x of buf) counts.level = Math.max(counts.level, Math.abs(x));
    }, METER_MS);
  }

  async function start() {
    const make = ENGINES[cfg.engine];
    if (!make) throw new Error(`no synth engine ${cfg.engine}`);
    ctx = new AudioContext({ latencyHint: "interactive" });
    const [soundfont] = await Promise.all([fetchBytes(cfg.soundfont), ...(cfg.scripts || []).map(
      (s) => loadScript(cfg.base + s))]);
    const made = await make(ctx, soundfont);
    const analyser = ctx.createAnalyser();
    analyser.fftSize = 2048;
    made.connect(analyser);
    analyser.connect(ctx.destination);
    meter(analyser);
    engine = made;
    return true;
  }

  function say(text) {
    const note = document.createElement("div");
    note.id = "live-sound-note";
    note.textContent = text;
    note.style.cssText = "font-size:0.85em;opacity:0.75;padding:2px 8px";
    const place = () => (document.querySelector("gradio-app") || document.body).prepend(note);
    if (document.body) place(); else document.addEventListener("DOMContentLoaded", place, { once: true });
  }

  function now() { return ctx ? ctx.currentTime : 0; }

  function when(at) { return at && ctx && at > ctx.currentTime ? at : 0; }

  function perfAt(at) {
    if (!ctx) return performance.now();
    const stamp = ctx.getOutputTimestamp ? ctx.getOutputTimestamp() : null;
    if (!stamp || !stamp.performanceTime) return performance.now() + Math.max(0, at - ctx.currentTime) * 1000;
    return stamp.performanceTime + ((at || ctx.currentTime) - stamp.contextTime) * 1000;
  }

  function emit(type, pitch, velocity, at) {
    const sounds = at || now();
    const ev = { type, pitch, velocity, at: sounds, perf: perfAt(sounds) };
    for (const fn of listeners) {
      try { fn(ev); } catch (err) { console.error("comagenSynth listener", err); }
    }
  }

  const api = {
    available: false,
    message: null,
    ready: null,
    resume: () => (ctx && ctx.state !== "running" ? ctx.resume() : Promise.resolve()),
    now,
    noteOn(pitch, velocity, at = 0) {
      if (!engine) return;
      const t = when(at);
      engine.noteOn(pitch, velocity, t);
      counts.noteOn += 1;
      emit("noteOn", pitch, velocity, t);
    },
    noteOff(pitch, at = 0) {
      if (!engine) return;
      const t = when(at);
      engine.noteOff(pitch, t);
      counts.noteOff += 1;
      emit("noteOff", pitch, 0, t);
    },
    pedal(down, at = 0) {
      if (!engine) return;
      const t = when(at);
      engine.control(SUSTAIN, down ? 127 : 0, t);
      emit("pedal", null, down ? 127 : 0, t);
    },
    stopAll() {  // every sound and every scheduled event; the pedal up
      if (!engine) return;
      engine.stopAll();
      engine.control(SUSTAIN, 0, 0);
    },
    onEvent(fn) { listeners.push(fn); },
    stats: () => ({ ...counts }),
    resetStats() { counts.noteOn = 0; counts.noteOff = 0; counts.level = 0; },
  };
  window.comagenSynth = api;
  api.ready = start().then(() => { api.available = true; return true; }, (err) => {
    api.message = String((err && err.message) || err);
    say(`live sound unavailable: ${api.message}`);
    console.warn("comagen: live sound unavailable:", api.message);
    return false;
  });
})();
