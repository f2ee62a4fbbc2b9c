"""A share bundle's pages: each session's page (its audio, chapters, read-along transcript
and breath pacer, the data inlined) and the client's index. Self-contained HTML: the
style and script are inlined and allowed by hash in a Content-Security-Policy that lets
nothing load from outside the folder."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from dataclasses import dataclass
from importlib import resources

from guided_audio.dsp.effects import RATE
from guided_audio.plan.timeline import Timeline, clock

STAMP = re.compile(r"<(\d\d):(\d\d):(\d\d\.\d\d\d)>")


@dataclass(frozen=True)
class Sentence:
    """One transcript cue: its words, each with the second it starts at."""

    start: float
    end: float
    words: tuple[tuple[float, str], ...]


@dataclass(frozen=True)
class SessionPage:
    key: str  # stable across runs: the kept place is found by it
    title: str
    description: str
    author: str
    audio: str  # the MP3's file name, beside the page
    transcript: str  # the VTT's file name
    seconds: float
    chapters: tuple[tuple[str, float], ...]
    sentences: tuple[Sentence, ...]
    breaths: tuple[tuple[float, float, str], ...]
    sets: tuple[tuple[float, float, int], ...] = ()  # bilateral: start, end, passes


@dataclass(frozen=True)
class IndexEntry:
    page: str
    title: str
    description: str
    seconds: float


def sentence_from_cue(start: float, end: float, text: str) -> Sentence:
    """A cue's text as the transcript writes it (`first <00:00:01.200>second ...`): the
    first word starts with the cue, each later one at its inner timestamp."""
    words: list[tuple[float, str]] = []
    at = start
    for token in text.split(" "):
        stamp = STAMP.match(token)
        if stamp:
            hours, minutes, seconds = stamp.groups()
            at = int(hours) * 3600 + int(minutes) * 60 + float(seconds)
            token = token[stamp.end() :]
        words.append((at, html.unescape(token)))
    return Sentence(start, end, tuple(words))


def breaths(timeline: Timeline) -> tuple[tuple[float, float, str], ...]:
    rate = timeline.rate
    return tuple((b.start / rate, b.end / rate, b.kind) for b in timeline.breaths)


def bilateral_sets(timeline: Timeline) -> tuple[tuple[float, float, int], ...]:
    rate = timeline.rate
    return tuple((a / rate, b / rate, n) for a, b, n in timeline.bilateral_sets())


def _asset(name: str) -> str:
    return (resources.files("guided_audio.share") / "assets" / name).read_text(encoding="utf-8")


def _hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def _policy(style: str, script: str | None) -> str:
    scripts = _hash(script) if script is not None else "'none'"
    return (
        f"default-src 'none'; style-src {_hash(style)}; script-src {scripts}; "
        "media-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'"
    )


def _document(title: str, body: str, style: str, script: str | None = None) -> str:
    e = html.escape
    tail = f"<script>{script}</script>\n" if script is not None else ""
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{e(_policy(style, script))}">\n'
        '<meta name="referrer" content="no-referrer">\n'
        '<meta name="robots" content="noindex, nofollow">\n'
        f"<title>{e(title)}</title>\n<style>{style}</style>\n</head>\n"
        f"<body>\n{body}{tail}</body>\n</html>\n"
    )


def _json(value: object) -> str:
    # Inside <script>: "</" would end the element early.
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/")


def _transcript(page: SessionPage) -> str:
    e = html.escape
    starts = [start for _, start in page.chapters]
    parts: list[str] = []
    chapter = -1
    for sentence in page.sentences:
        while chapter + 1 < len(starts) and starts[chapter + 1] <= sentence.start:
            chapter += 1
            parts.append(f"<h3>{e(page.chapters[chapter][0])}</h3>")
        spans = []
        for index, (at, word) in enumerate(sentence.words):
            end = sentence.words[index + 1][0] if index + 1 < len(sentence.words) else sentence.end
            spans.append(f'<span data-t="{at:.3f}" data-end="{end:.3f}">{e(word)}</span>')
        parts.append(f"<p>{' '.join(spans)}</p>")
    return "\n".join(parts)


def session_page(page: SessionPage, back: str = "index.html") -> str:
    """The page of one session, as HTML."""
    e = html.escape
    chapters = "\n".join(
        f'<li><button type="button" data-t="{start:.3f}">{e(title)}'
        f'<span class="at">{clock(round(start * RATE))}</span></button></li>'
        for title, start in page.chapters
    )
    data = {
        "key": page.key,
        "title": page.title,
        "author": page.author,
        "duration": round(page.seconds, 3),
        "chapters": [{"title": t, "start": round(s, 3)} for t, s in page.chapters],
        "breaths": [[round(a, 3), round(b, 3), kind] for a, b, kind in page.breaths],
        "sets": [[round(a, 3), round(b, 3), n] for a, b, n in page.sets],
    }
    body = f"""<main>
<p><a href="{e(back)}">All sessions</a></p>
<h1>{e(page.title)}</h1>
<p class="description">{e(page.description)}</p>
<div id="resume" role="group" aria-label="Continue where you were" hidden>
<p>You were at <span id="resume-at"></span> last time.</p>
<button type="button" id="resume-yes">Continue from there</button>
<button type="button" id="resume-no">Start from the beginning</button>
</div>
<audio id="audio" controls preload="metadata" src="{e(page.audio)}">
<track kind="captions" src="{e(page.transcript)}" srclang="en" label="Transcript">
</audio>
<div class="controls">
<button type="button" id="play" aria-pressed="false">Play</button>
<button type="button" id="back" aria-label="Back 10 seconds">&minus;10 s</button>
<button type="button" id="forward" aria-label="Forward 10 seconds">+10 s</button>
<span id="clock" aria-live="off"></span>
</div>
<p>Now: <span id="now-chapter"></span></p>
<div id="pacer" data-phase="" hidden>
<div id="pacer-ring" aria-hidden="true"></div>
<p id="pacer-label"></p>
</div>
<div id="light" data-side="" hidden>
<p>Left and right: let the light and the sound go by.</p>
<div id="light-track" aria-hidden="true"><div id="light-dot"></div></div>
</div>
<nav id="chapters" aria-label="Chapters">
<h2>Chapters</h2>
<ol>
{chapters}
</ol>
</nav>
<section aria-labelledby="transcript-heading">
<h2 id="transcript-heading">Transcript</h2>
<div id="transcript" tabindex="0" aria-label="Transcript: choose a word to listen from there">
{_transcript(page)}
</div>
</section>
<footer>Keys: space play or pause · ← → 10 seconds · n / b chapter · + &minus; volume · m mute.
Your place is kept on this device only.</footer>
</main>
<script type="application/json" id="session-data">{_json(data)}</script>
"""
    return _document(page.title, body, _asset("page.css"), _asset("page.js"))


def index_page(title: str, entries: list[IndexEntry], note: str, feed: str | None) -> str:
    """The client's list of sessions, with the therapist's note (plain text: a blank line
    starts a new paragraph)."""
    e = html.escape
    paragraphs = [p.strip() for p in note.split("\n\n") if p.strip()]
    notes = "\n".join(f'<p class="note">{e(p)}</p>' for p in paragraphs)
    items = "\n".join(
        f'<li><a href="{e(entry.page)}">{e(entry.title)}</a> '
        f'<span class="length">{clock(round(entry.seconds * RATE))}</span>'
        f"<p>{e(entry.description)}</p></li>"
        for entry in entries
    )
    subscribe = (
        f'<p>To listen in a podcast app, add this feed: <a href="{e(feed)}">{e(feed)}</a></p>'
        if feed
        else ""
    )
    body = (
        f"<main>\n<h1>{e(title)}</h1>\n{notes}\n"
        f'<ul class="sessions">\n{items}\n</ul>\n{subscribe}\n'
        "<footer>These pages keep nothing about you anywhere but on this device.</footer>\n"
        "</main>\n"
    )
    return _document(title, body, _asset("page.css"))
