// guided-audio session page: plays the session's MP3 with its chapters, a read-along
// transcript, a breath pacer, the terminal player's keys and a kept place. Everything it
// needs is in this page; it fetches nothing.
"use strict";
(function () {
  const data = JSON.parse(document.getElementById("session-data").textContent);
  const audio = document.getElementById("audio");
  const $ = (id) => document.getElementById(id);
  const reduced = window.matchMedia("(prefers-reduced-motion: reduce)");
  const STEP_S = 10, BACK_WINDOW_S = 3, SAVE_EVERY_S = 5;
  const placeKey = "guided-audio:place:" + data.key;

  // --- chapters ------------------------------------------------------------------------------
  const chapterButtons = Array.from(document.querySelectorAll("#chapters button"));
  const chapterStarts = data.chapters.map((c) => c.start);
  chapterButtons.forEach((button, i) =>
    button.addEventListener("click", () => seek(chapterStarts[i], true)));

  // --- words ---------------------------------------------------------------------------------
  const words = Array.from(document.querySelectorAll("#transcript [data-t]"));
  const wordStarts = words.map((w) => parseFloat(w.dataset.t));
  const wordEnds = words.map((w) => parseFloat(w.dataset.end));
  words.forEach((w, i) => w.addEventListener("click", () => seek(wordStarts[i], true)));

  // The last index whose start is at or before t (-1 if none).
  function lastAtOrBefore(starts, t) {
    let lo = 0, hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (starts[mid] <= t) lo = mid + 1; else hi = mid;
    }
    return lo - 1;
  }

  let currentWord = -1, currentChapter = -1;
  function mark(list, before, now) {
    if (before === now) return now;
    if (before >= 0) { list[before].removeAttribute("aria-current"); list[before].classList.remove("now"); }
    if (now >= 0) { list[now].setAttribute("aria-current", "true"); list[now].classList.add("now"); }
    return now;
  }

  // --- the breath pacer ----------------------------------------------------------------------
  const pacer = $("pacer"), ring = $("pacer-ring"), label = $("pacer-label");
  const breathStarts = data.breaths.map((b) => b[0]);
  const SAY = { in: "Breathe in", hold: "Hold", out: "Breathe out", rest: "Rest" };
  function drawPacer(t) {
    const i = lastAtOrBefore(breathStarts, t);
    const breath = i >= 0 && t < data.breaths[i][1] ? data.breaths[i] : null;
    if (!breath) {
      if (pacer.dataset.phase) { pacer.dataset.phase = ""; pacer.hidden = true; }
      return;
    }
    const [start, end, kind] = breath;
    const progress = (t - start) / (end - start);
    pacer.hidden = false;
    pacer.dataset.phase = kind;
    label.textContent = SAY[kind] + " " + Math.max(1, Math.ceil(end - t));
    const small = 0.45;
    const scale = kind === "in" ? small + (1 - small) * progress
      : kind === "out" ? 1 - (1 - small) * progress
      : kind === "hold" ? 1 : small;
    ring.style.transform = reduced.matches ? "none" : "scale(" + scale.toFixed(3) + ")";
  }

  // --- the bilateral light: on each sound's side as it sounds, gliding to the next -------
  const light = $("light"), dot = $("light-dot");
  function drawLight(t) {
    const set = data.sets.find((s) => s[0] <= t && t < s[1]);
    if (!set) {
      if (light.dataset.side) { light.dataset.side = ""; light.hidden = true; }
      return;
    }
    const [start, end, passes] = set;
    const passLength = (end - start) / passes;
    const index = Math.min(passes - 1, Math.floor((t - start) / passLength));
    const progress = (t - start - index * passLength) / passLength;
    const side = index % 2 === 0 ? -1 : 1;
    const x = reduced.matches ? side : side * Math.cos(Math.PI * progress);
    light.hidden = false;
    light.dataset.side = side < 0 ? "left" : "right";
    dot.style.left = ((x + 1) / 2 * 100).toFixed(2) + "%";
  }

  // --- following the audio -------------------------------------------------------------------
  function follow() {
    const t = audio.currentTime;
    let w = lastAtOrBefore(wordStarts, t);
    if (w >= 0 && t >= wordEnds[w]) w = -1; // between sentences: no word is being spoken
    const before = currentWord;
    currentWord = mark(words, currentWord, w);
    if (w >= 0 && w !== before && !userScrolling) keepInView(words[w]);
    currentChapter = mark(chapterButtons, currentChapter, Math.max(0, lastAtOrBefore(chapterStarts, t)));
    $("now-chapter").textContent = data.chapters[currentChapter] ? data.chapters[currentChapter].title : "";
    $("clock").textContent = clock(t) + " / " + clock(data.duration);
    drawPacer(t);
    drawLight(t);
  }
  // Only the transcript scrolls (the player stays in view); a reader scrolling it wins.
  const box = $("transcript");
  function keepInView(word) {
    const top = word.offsetTop;
    if (top < box.scrollTop || top > box.scrollTop + box.clientHeight - 2 * word.offsetHeight) {
      box.scrollTo({ top: Math.max(0, top - box.clientHeight / 3), behavior: reduced.matches ? "auto" : "smooth" });
    }
  }
  let userScrolling = false, scrollTimer = 0;
  for (const kind of ["wheel", "touchmove"]) {
    box.addEventListener(kind, () => {
      userScrolling = true;
      clearTimeout(scrollTimer);
      scrollTimer = setTimeout(() => { userScrolling = false; }, 4000);
    }, { passive: true });
  }

  function frame() {
    follow();
    if (!audio.paused) requestAnimationFrame(frame);
  }
  audio.addEventListener("play", () => { requestAnimationFrame(frame); keepAwake(true); showPlaying(); });
  audio.addEventListener("pause", () => { savePlace(); keepAwake(false); showPlaying(); });
  audio.addEventListener("seeked", follow);
  audio.addEventListener("timeupdate", () => {
    if (audio.paused) follow();
    if (Math.abs(audio.currentTime - lastSaved) >= SAVE_EVERY_S) savePlace();
  });
  audio.addEventListener("ended", () => { forgetPlace(); showPlaying(); });

  function clock(s) {
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60, sec = s % 60;
    const mm = (h ? String(m).padStart(2, "0") : String(m)), ss = String(sec).padStart(2, "0");
    return (h ? h + ":" : "") + mm + ":" + ss;
  }

  function seek(t, play) {
    audio.currentTime = Math.min(Math.max(0, t), data.duration);
    follow();
    if (play && audio.paused) audio.play().catch(() => {});
  }

  // --- controls and keys (as the terminal player's) -----------------------------------------
  const playButton = $("play");
  function showPlaying() {
    playButton.textContent = audio.paused ? "Play" : "Pause";
    playButton.setAttribute("aria-pressed", String(!audio.paused));
  }
  function toggle() { if (audio.paused) audio.play().catch(() => {}); else audio.pause(); }
  function chapter(step) {
    const here = Math.max(0, lastAtOrBefore(chapterStarts, audio.currentTime));
    let target = here + step;
    if (step < 0 && audio.currentTime - chapterStarts[here] > BACK_WINDOW_S) target = here;
    if (target >= chapterStarts.length) return;
    seek(chapterStarts[Math.max(0, target)], false);
  }
  function volume(step) {
    audio.muted = false;
    audio.volume = Math.min(1, Math.max(0, Math.round((audio.volume + step) * 10) / 10));
  }
  playButton.addEventListener("click", toggle);
  $("back").addEventListener("click", () => seek(audio.currentTime - STEP_S, false));
  $("forward").addEventListener("click", () => seek(audio.currentTime + STEP_S, false));
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const onControl = event.target instanceof HTMLButtonElement;
    const actions = {
      " ": toggle, "k": toggle,
      "ArrowLeft": () => seek(audio.currentTime - STEP_S, false),
      "ArrowRight": () => seek(audio.currentTime + STEP_S, false),
      "n": () => chapter(1), "PageDown": () => chapter(1),
      "b": () => chapter(-1), "PageUp": () => chapter(-1),
      "+": () => volume(0.1), "=": () => volume(0.1), "ArrowUp": () => volume(0.1),
      "-": () => volume(-0.1), "ArrowDown": () => volume(-0.1),
      "m": () => { audio.muted = !audio.muted; },
    };
    const action = actions[event.key];
    if (!action || (onControl && (event.key === " " || event.key === "Enter"))) return;
    event.preventDefault();
    action();
  });

  // --- the place, kept on this device --------------------------------------------------------
  let lastSaved = 0;
  function savePlace() {
    lastSaved = audio.currentTime;
    try {
      if (audio.currentTime > 1 && !audio.ended) localStorage.setItem(placeKey, String(audio.currentTime));
    } catch (e) { /* storage may be off: the place is simply not kept */ }
  }
  function forgetPlace() { try { localStorage.removeItem(placeKey); } catch (e) { /* as above */ } }
  window.addEventListener("pagehide", savePlace);
  let saved = NaN;
  try { saved = parseFloat(localStorage.getItem(placeKey)); } catch (e) { /* as above */ }
  if (saved > 5 && saved < data.duration - 5) {
    const offer = $("resume");
    $("resume-at").textContent = clock(saved);
    offer.hidden = false;
    $("resume-yes").addEventListener("click", () => { offer.hidden = true; seek(saved, true); });
    $("resume-no").addEventListener("click", () => { offer.hidden = true; forgetPlace(); });
  }

  // --- lock screen, headset and a screen that stays on --------------------------------------
  if ("mediaSession" in navigator) {
    navigator.mediaSession.metadata = new MediaMetadata({ title: data.title, artist: data.author });
    const handlers = {
      play: () => audio.play(), pause: () => audio.pause(),
      seekbackward: () => seek(audio.currentTime - STEP_S, false),
      seekforward: () => seek(audio.currentTime + STEP_S, false),
      previoustrack: () => chapter(-1), nexttrack: () => chapter(1),
      seekto: (d) => seek(d.seekTime, false),
    };
    for (const [name, handler] of Object.entries(handlers)) {
      try { navigator.mediaSession.setActionHandler(name, handler); } catch (e) { /* unsupported */ }
    }
  }
  let wakeLock = null;
  function keepAwake(on) {
    if (on && "wakeLock" in navigator && document.visibilityState === "visible") {
      navigator.wakeLock.request("screen").then((lock) => { wakeLock = lock; }, () => {});
    } else if (!on && wakeLock) {
      wakeLock.release().catch(() => {});
      wakeLock = null;
    }
  }
  document.addEventListener("visibilitychange", () => { if (!audio.paused) keepAwake(true); });

  follow();
  showPlaying();
})();
