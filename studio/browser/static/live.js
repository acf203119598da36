// Hear it as it is written: while a take streams, play the first variation's new notes from the hidden
// #live-notes text (studio/livesound.py: a `take <id>` line, then `start pitch velocity duration` lines)
// through window.comagenSynth. The first note sounds LOOKAHEAD s after it arrives; the stream keeps
// ahead of that from then on, and a note that arrives too late pauses the piece instead of crowding it.
// Stop, a new take, or playing the finished audio silences it. window.comagenLive counts this take's
// notes and the pauses a late note made (what the bench reports: a pause is a stutter).
(() => {
  "use strict";
  const LOOKAHEAD = 0.2;  // s between the first notes' arrival and their sound: the buffer
  const MIN_LEAD = 0.05;  // a note is never scheduled sooner than this
  const MIN_NOTE = 0.02;  // a zero-length note still sounds
  const POLL_MS = 25;
  let take = null;
  let origin = null;  // audio time at which the continuation's time 0 sounds
  let done = 0;  // notes of this take scheduled
  let muted = false;
  const live = window.comagenLive = { notes: 0, pauses: 0, paused_s: 0 };

  function silence() { if (window.comagenSynth) window.comagenSynth.stopAll(); }

  function schedule(synth, line) {
    const [t, pitch, velocity, duration] = line.split(" ").map(Number);
    const now = synth.now();
    if (origin === null) origin = now + LOOKAHEAD - t;
    const late = now + MIN_LEAD - (origin + t);
    if (late > 0) { origin += late; live.pauses += 1; live.paused_s += late; }
    live.notes += 1;
    synth.noteOn(pitch, velocity, origin + t);
    synth.noteOff(pitch, origin + t + Math.max(duration, MIN_NOTE));
  }

  function poll() {
    const synth = window.comagenSynth;
    const box = document.querySelector("#live-notes textarea");
    if (!synth || !synth.available || !box || !box.value) return;
    const lines = box.value.split("\n");
    if (lines[0] !== take) {
      take = lines[0];
      Object.assign(live, { notes: 0, pauses: 0, paused_s: 0 });
      origin = null;
      done = 0;
      muted = false;
      silence();
    }
    const whole = lines.length - 2;  // the first line is the take; the last is empty (or not yet whole)
    if (!muted) for (let i = done; i < whole; i++) schedule(synth, lines[i + 1]);
    done = Math.max(done, whole);
  }

  setInterval(poll, POLL_MS);
  document.addEventListener("click", (e) => {
    const button = e.target.closest && e.target.closest("#generate, #continue, #stop");
    if (!button || !window.comagenSynth) return;
    window.comagenSynth.resume();  // a click is the gesture a browser wants before sound
    if (button.id === "stop") { muted = true; silence(); }
  }, true);
  document.addEventListener("play", () => { muted = true; silence(); }, true);  // the rendered audio plays
})();
