// The Play tab: a duet with the model. Keys come from the on-screen keyboard (mouse, touch), the
// computer keyboard (two rows, octave shift) or a MIDI keyboard (Web MIDI); the player hears them at
// once through window.comagenSynth and the server (/comagen/duet, a WebSocket) feeds them into the
// model as they are played. Answer notes arrive with times on this page's clock (performance.now()
// in seconds) and are handed to the synth a short look-ahead before they sound, so a cut-in can
// drop what has not sounded yet. window.comagenPlay is the API the page's buttons and tests use.
(() => {
  "use strict";
  const LOOKAHEAD_S = 0.15; // answer notes are given to the synth this long before they sound
  const TICK_MS = 20;
  const LOWER = "zsxdcvgbhnjm,l.;/"; // C to E, a semitone a key (white and black rows)
  const UPPER = "q2w3er5t6y7ui9o0p"; // the same an octave up
  const KEY_VELOCITY = 90;
  const SOFT_PEDAL = 67; // hands the turn over from a MIDI keyboard
  const SUSTAIN = 64;
  const clock = () => performance.now() / 1000;

  const state = {
    ws: null, octave: 4, held: new Map(), queue: [], ahead: [], sounding: new Map(), turn: "player",
    turns: [], lastRelease: null, pause: 1.0, log: [], midi: null, input: null, takeWaiters: [],
  };

  function synth() { return window.comagenSynth && window.comagenSynth.available ? window.comagenSynth : null; }

  function show(text) {
    const el = document.querySelector("#play-status");
    if (el) el.textContent = text;
    state.log.push({ type: "status", text, perf: performance.now() });
  }

  function send(msg) {
    if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(JSON.stringify(msg));
  }

  // ---- the player's notes
  function key(pitch, velocity, t = clock()) {
    if (pitch < 21 || pitch > 108) return;
    if (velocity > 0) {
      if (state.turn === "model") cut(t); else retract();
      state.held.set(pitch, t);
      const s = synth(); if (s) s.noteOn(pitch, velocity);
    } else {
      if (!state.held.delete(pitch)) return;
      state.lastRelease = t;
      const s = synth(); if (s) s.noteOff(pitch);
    }
    state.log.push({ type: velocity > 0 ? "keyOn" : "keyOff", pitch, perf: t * 1000 });
    send({ type: "key", t, pitch, velocity });
    paintKey(pitch, velocity > 0);
  }

  function pedal(down, t = clock()) {
    const s = synth(); if (s) s.pedal(down);
    send({ type: "pedal", t, down });
  }

  function takeOver() { send({ type: "take_over", t: clock() }); }

  // ---- the model's notes
  // Tentative notes come while the pause runs: the server prepared the answer's start for the moment
  // the turn will pass, so it sounds then. The player playing on (or the server's "retract") drops them.
  function onNote(ev) {
    if (!ev.tentative && state.turn !== "model") return; // the rest of an answer the player cut
    state.queue.push(ev);
    const turn = state.turns[state.turns.length - 1];
    if (!ev.tentative && turn && turn.firstNote === undefined) turn.firstNote = ev.start;
    tick(); // a note due now sounds now, not at the next tick
  }

  function tick() {
    const s = synth(); const now = clock();
    while (state.queue.length && state.queue[0].start <= now + LOOKAHEAD_S) {
      const n = state.queue.shift();
      const at = s ? s.now() + Math.max(n.start - now, 0) : 0;
      let sounds = performance.now() + Math.max(n.start - now, 0) * 1000; // without a synth: when it is due
      if (s) {
        s.noteOn(n.pitch, n.velocity, at);
        sounds = state.lastSynthEvent ? state.lastSynthEvent.perf : sounds; // the synth's own output time
        s.noteOff(n.pitch, s.now() + Math.max(n.end - now, 0.01));
      }
      state.sounding.set(n.pitch, n.end);
      if (n.tentative) {
        state.ahead.push({ pitch: n.pitch, start: n.start, sounds });
      } else {
        const turn = state.turns[state.turns.length - 1];
        if (turn && turn.firstSound === undefined) turn.firstSound = sounds;
      }
      state.log.push({ type: "answerNote", pitch: n.pitch, start: n.start, handed: now, tentative: !!n.tentative });
    }
  }

  function retract() {
    state.queue = state.queue.filter((n) => !n.tentative);
    const s = synth(); const now = clock();
    for (const n of state.ahead) {
      if (s && !state.held.has(n.pitch)) s.noteOff(n.pitch, s.now() + Math.max(n.start - now, 0) + 0.001);
      state.sounding.delete(n.pitch);
    }
    state.ahead = [];
  }

  function modelTurn(msg) {
    state.turn = "model";
    const turn = { at: msg.at, lastRelease: state.lastRelease, pause: state.pause };
    const first = state.ahead[0] || state.queue.find((n) => n.tentative);
    if (first) turn.firstNote = first.start;
    if (state.ahead.length) turn.firstSound = state.ahead[0].sounds;
    for (const n of state.queue) n.tentative = false; // prepared notes are the answer's now
    state.ahead = [];
    state.turns.push(turn);
    show("The model is answering ... (play to cut in)");
  }

  function cut(t) {
    state.queue = [];
    state.ahead = [];
    const s = synth();
    for (const [pitch, end] of state.sounding) if (end > t && s && !state.held.has(pitch)) s.noteOff(pitch);
    state.sounding.clear();
    state.turn = "player";
    show("Your turn (you cut in).");
  }

  function onMessage(ev) {
    const msg = JSON.parse(ev.data);
    state.log.push({ ...msg, received: performance.now() });
    if (msg.type === "note") onNote(msg);
    else if (msg.type === "retract") retract();
    else if (msg.type === "cut") { if (state.turn === "model") cut(msg.at); }
    else if (msg.type === "turn" && msg.who === "model") modelTurn(msg);
    else if (msg.type === "turn") {
      state.turn = "player";
      show("Your turn.");
    } else if (msg.type === "ready") show(`Play! The model (${msg.runtime}) answers after a pause.`);
    else if (msg.type === "message") show(msg.text);
    else if (msg.type === "error") { state.failed = true; show(`Error: ${msg.text}`); }
    else if (msg.type === "take") {
      for (const resolve of state.takeWaiters.splice(0)) resolve(msg.id);
    }
  }

  // ---- the session
  function start(options) {
    stop();
    state.pause = Number(options.pause) || 1.0;
    state.turns = []; state.log = []; state.queue = []; state.ahead = []; state.failed = false;
    const url = new URL("comagen/duet", window.location.href.split("?")[0].replace(/[^/]*$/, ""));
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    const ws = new WebSocket(url);
    state.ws = ws;
    ws.onopen = () => ws.send(JSON.stringify({ type: "start", ...options }));
    ws.onmessage = onMessage;
    ws.onclose = () => { if (state.ws === ws) { state.ws = null; if (!state.failed) show("The duet has ended."); } };
    if (window.comagenSynth) window.comagenSynth.resume();
    show("Starting the duet ...");
  }

  function finish() {
    return new Promise((resolve) => {
      if (!state.ws) { resolve(""); return; }
      state.takeWaiters.push(resolve);
      send({ type: "finish" });
    });
  }

  function stop() { if (state.ws) { const ws = state.ws; state.ws = null; ws.close(); } }

  // ---- Web MIDI
  function midiMessage(data, timeStamp) {
    const t = (timeStamp || performance.now()) / 1000;
    const [status, a, b] = data; const kind = status & 0xf0;
    if (kind === 0x90) key(a, b, t);
    else if (kind === 0x80) key(a, 0, t);
    else if (kind === 0xb0 && a === SUSTAIN) pedal(b >= 64, t);
    else if (kind === 0xb0 && a === SOFT_PEDAL && b >= 64) takeOver();
  }

  async function midiDevices() {
    if (!navigator.requestMIDIAccess) { show("This browser has no Web MIDI: use the keys on screen or your computer's."); return []; }
    try {
      state.midi = state.midi || await navigator.requestMIDIAccess();
    } catch (err) { show(`MIDI refused: ${err.message || err}`); return []; }
    state.midi.onstatechange = (e) => {
      if (state.input && e.port.id === state.input.id && e.port.state === "disconnected") {
        show(`MIDI device "${e.port.name}" disconnected: play on screen, or plug it back and pick it again.`);
        state.input = null;
      }
    };
    return [...state.midi.inputs.values()];
  }

  async function useMidi(id) {
    if (state.input) state.input.onmidimessage = null;
    const input = (await midiDevices()).find((i) => i.id === id);
    if (!input) return;
    input.onmidimessage = (e) => midiMessage(e.data, e.timeStamp);
    state.input = input;
    show(`Listening to ${input.name}.`);
  }

  // ---- the keyboard on screen and the computer's keys
  function pitchOfKey(k) {
    const low = LOWER.indexOf(k); const high = UPPER.indexOf(k);
    if (low >= 0) return 12 * (state.octave + 1) + low;
    if (high >= 0) return 12 * (state.octave + 2) + high;
    return null;
  }

  function onKeyDown(e) {
    if (!document.querySelector("#comagen-play") || e.target.closest("input, textarea, select")) return;
    if (!isShown()) return;
    if (e.key === "-" || e.key === "=") { state.octave = Math.min(Math.max(state.octave + (e.key === "=" ? 1 : -1), 1), 6); build(); return; }
    if (e.key === " ") { e.preventDefault(); if (!e.repeat) pedal(true); return; }
    if (e.key === "Enter") { takeOver(); return; }
    const pitch = pitchOfKey(e.key.toLowerCase());
    if (pitch !== null && !e.repeat) { e.preventDefault(); key(pitch, KEY_VELOCITY); }
  }

  function onKeyUp(e) {
    if (e.key === " ") { pedal(false); return; }
    const pitch = pitchOfKey(e.key.toLowerCase());
    if (pitch !== null) key(pitch, 0);
  }

  function isShown() { const el = document.querySelector("#comagen-play"); return el && el.offsetParent !== null; }

  function paintKey(pitch, down) {
    const el = document.querySelector(`#comagen-play [data-pitch="${pitch}"]`);
    if (el) el.classList.toggle("down", down);
  }

  function build() {
    const root = document.querySelector("#comagen-play");
    if (!root) return;
    const low = 12 * (state.octave + 1); const keys = [];
    for (let p = low; p < low + 29; p++) {
      const black = [1, 3, 6, 8, 10].includes(p % 12);
      keys.push(`<div class="pk ${black ? "black" : "white"}" data-pitch="${p}"></div>`);
    }
    root.innerHTML = `<div class="pk-row">${keys.join("")}</div>
      <div class="pk-help">Keys: ${LOWER} and ${UPPER} (octave ${state.octave}; - and = shift), space = sustain,
      Enter = hand over. MIDI: <select id="play-midi"><option value="">(none)</option></select></div>`;
    for (const el of root.querySelectorAll(".pk")) {
      const p = Number(el.dataset.pitch);
      el.addEventListener("pointerdown", (e) => { e.preventDefault(); el.setPointerCapture(e.pointerId); key(p, KEY_VELOCITY); });
      el.addEventListener("pointerup", () => key(p, 0));
      el.addEventListener("pointercancel", () => key(p, 0));
    }
    const select = root.querySelector("#play-midi");
    select.addEventListener("focus", async () => {
      const inputs = await midiDevices();
      select.innerHTML = `<option value="">(none)</option>` + inputs.map((i) => `<option value="${i.id}">${i.name}</option>`).join("");
    }, { once: true });
    select.addEventListener("change", () => useMidi(select.value));
  }

  const style = document.createElement("style");
  style.textContent = `#comagen-play .pk-row{display:flex;position:relative;height:120px;user-select:none;touch-action:none}
    #comagen-play .pk{border:1px solid #555;border-radius:0 0 4px 4px;cursor:pointer}
    #comagen-play .white{flex:1 1 0;background:#fff;height:120px}
    #comagen-play .black{flex:0 0 0;width:0;z-index:1;position:relative}
    #comagen-play .black::after{content:"";position:absolute;left:-9px;width:18px;height:72px;background:#222;border-radius:0 0 3px 3px}
    #comagen-play .white.down{background:#9fc3ff}#comagen-play .black.down::after{background:#1f5fbf}
    #comagen-play .pk-help{font-size:0.85em;opacity:0.8;margin-top:6px}`;
  document.head.appendChild(style);
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  new MutationObserver(() => {
    const root = document.querySelector("#comagen-play");
    if (root && !root.querySelector(".pk-row")) build();
  }).observe(document.documentElement, { childList: true, subtree: true });
  setInterval(tick, TICK_MS);
  const listen = () => window.comagenSynth && window.comagenSynth.onEvent((e) => { state.lastSynthEvent = e; });
  if (window.comagenSynth) listen(); else window.addEventListener("load", listen);

  window.comagenPlay = { start, stop, finish, key, pedal, takeOver, midiMessage, state };
})();
