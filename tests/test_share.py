"""`share` as a therapist and a client use it: the bundle's files, its privacy and its
stability on disk; the session page in a real headless Chromium opened from `file://`
(playing, the read-along, chapters against the MP3's CHAP frames, the pacer against the
plan, keys, the kept place, axe-core); the feed read back by podcast parsers."""

from __future__ import annotations

import html
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import feedparser
import podcastparser
import pytest
import webvtt
import xmlschema
from mutagen.id3 import ID3
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, sync_playwright

from conftest import cli, interrupt_when_ready, on_a_small_disk, write
from guided_audio import session
from guided_audio.session import Options, Silent

ROOT = Path(__file__).parent.parent
SCRIPTS = [ROOT / "scripts" / "box-breathing.yaml", ROOT / "scripts" / "grounding.yaml"]
CHROMIUM = "/usr/bin/chromium"
AXE = Path(__file__).parent / "browser" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "test-artifacts"
BASE = "https://example.org/c/"
NOTE = "Sam, these are the two practices we did together.\n\nListen once a day if you can."


@dataclass(frozen=True)
class Shared:
    out: Path
    bundle: Path


def _share(out: Path, *extra: str, scripts: list[Path] = SCRIPTS) -> Shared:
    note = write(out.parent, NOTE, "note.txt")
    args = [*map(str, scripts), "-o", str(out), "--var", "client=Sam", "--note", str(note)]
    result = cli("share", *args, "--base-url", BASE, *extra)
    assert result.exit_code == 0, result.output + result.stderr
    [bundle] = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return Shared(out, bundle)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Shared:
    return _share(tmp_path_factory.mktemp("share") / "sam", "-q")


def _snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())}


# --- the bundle on disk ----------------------------------------------------------------------
def test_the_bundle_holds_pages_audio_transcripts_chapters_and_a_feed(shared: Shared) -> None:
    names = sorted(p.name for p in shared.bundle.iterdir())
    stems = ["box-breathing", "grounding"]
    expected = ["feed.xml", "index.html"]
    for stem in stems:
        expected += [f"{stem}.html", f"{stem}.mp3", f"{stem}.vtt", f"{stem}.chapters.json"]
    assert names == sorted(expected)
    assert sorted(p.name for p in shared.out.iterdir()) == sorted(
        ["share.json", shared.bundle.name]
    )
    token = json.loads((shared.out / "share.json").read_text())["token"]
    assert shared.bundle.name == f"sessions-{token}" and re.fullmatch(r"[0-9a-f]{32}", token)
    assert (shared.out / "share.json").stat().st_mode & 0o777 == 0o600
    index = (shared.bundle / "index.html").read_text()
    assert "Listen once a day if you can." in index and f"{BASE}feed.xml" in index


def test_the_clients_name_is_in_no_file_name_or_url(shared: Shared) -> None:
    assert not any("sam" in p.name.lower() for p in shared.bundle.rglob("*"))
    feed = (shared.bundle / "feed.xml").read_text()
    assert not any("sam" in url.lower() for url in re.findall(r'(?:url|href)="([^"]+)"', feed))
    # ...though the session itself greets Sam.
    assert "Sam" in (shared.bundle / "box-breathing.vtt").read_text()


def test_pages_are_small_and_load_nothing_from_elsewhere(shared: Shared) -> None:
    for page in shared.bundle.glob("*.html"):
        text = page.read_text()
        assert len(text.encode()) < 100_000, page.name
        assert "default-src 'none'" in html.unescape(text)
        for url in re.findall(r'(?:src|href)="([^"]+)"', text):
            # Only files beside it; the one address is the feed's, for a podcast app.
            assert ("/" not in url and ":" not in url) or url == f"{BASE}feed.xml", url


def test_sharing_again_changes_nothing(tmp_path: Path) -> None:
    first = _share(tmp_path / "c", "-q")
    before = _snapshot(first.bundle)
    again = _share(tmp_path / "c", "-q", "--force")
    assert again.bundle == first.bundle
    assert _snapshot(again.bundle) == before  # the same bytes, not even rewritten


def test_a_changed_script_replaces_only_its_own_files(tmp_path: Path) -> None:
    copies = [write(tmp_path, p.read_text(), p.name) for p in SCRIPTS]
    first = _share(tmp_path / "c", "-q", scripts=copies)
    before = _snapshot(first.bundle)
    text = copies[1].read_text().replace("description: ", "description: Changed. ", 1)
    copies[1].write_text(text)
    _share(tmp_path / "c", "-q", "--force", scripts=copies)
    after = _snapshot(first.bundle)
    changed = {name for name in before if before[name] != after[name]}
    assert "grounding.html" in changed and "index.html" in changed
    assert not any(name.startswith("box-breathing") for name in changed), changed


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--base-url", "http://example.org/c/"], "--base-url http://example.org/c/: must be an https://"),
        (["--length", "1s"], "--length 1s: a session is at least 10s long"),
    ],
)  # fmt: skip
def test_bad_options_write_nothing(tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("share", str(SCRIPTS[0]), "-o", str(tmp_path / "c"), *args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "c").exists()


def test_an_existing_bundle_needs_force(shared: Shared) -> None:
    result = cli("share", str(SCRIPTS[0]), "-o", str(shared.out))
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"{shared.out} already holds a bundle; use --force to bring it up to date\n"
    )


def test_a_script_that_fails_validation_makes_no_bundle(tmp_path: Path) -> None:
    bad = write(tmp_path, "title: Bad\nsections:\n  - title: A\n    steps:\n      - pause: soon\n")
    result = cli("share", str(SCRIPTS[0]), str(bad), "-o", str(tmp_path / "c"))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"{bad}:5:16: ")
    assert not (tmp_path / "c").exists()


# --- the feed, as podcast apps read it ---------------------------------------------------------
def test_the_feed_reads_back_in_feedparser_and_podcastparser(shared: Shared) -> None:
    data = (shared.bundle / "feed.xml").read_bytes()
    parsed = feedparser.parse(data)
    assert not parsed.bozo, parsed.get("bozo_exception")
    assert [e.title for e in parsed.entries] == [session.load_with_voices(p).title for p in SCRIPTS]
    for entry, script in zip(parsed.entries, SCRIPTS, strict=True):
        [enclosure] = entry.enclosures
        audio = shared.bundle / f"{script.stem}.mp3"
        assert enclosure.href == f"{BASE}{script.stem}.mp3"
        assert int(enclosure.length) == audio.stat().st_size
    podcast = podcastparser.parse(f"{BASE}feed.xml", io.BytesIO(data))
    seconds = [session.timeline(p, Options(variables={"client": "Sam"}), Silent()).seconds
               for p in SCRIPTS]  # fmt: skip
    episodes = {e["enclosures"][0]["url"]: e for e in podcast["episodes"]}
    for script, length in zip(SCRIPTS, seconds, strict=True):
        episode = episodes[f"{BASE}{script.stem}.mp3"]
        audio = shared.bundle / f"{script.stem}.mp3"
        assert episode["enclosures"][0]["file_size"] == audio.stat().st_size
        assert episode["enclosures"][0]["mime_type"] == "audio/mpeg"
        assert abs(episode["total_time"] - length) <= 1
        assert episode["link"] == f"{BASE}{script.stem}.html"
        assert episode["title"] == session.load_with_voices(script).title
        assert episode["guid"] and episode["published"] > 0
    assert podcast["title"] == "Your sessions" and podcast["link"] == f"{BASE}index.html"


# --- the page, in a real browser -------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), (
        "chromium is not installed: run ./test.sh (apt-get install chromium)"
    )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--no-first-run",
                  "--autoplay-policy=no-user-gesture-required"],
        )  # fmt: skip
        yield launched
        launched.close()


@dataclass
class Opened:
    page: Page
    errors: list[str]
    requests: list[str]


def _open(browser: Browser, url: str, width: int = 360, height: int = 740) -> Opened:
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=False)
    page = context.new_page()
    opened = Opened(page, [], [])

    def console(message: ConsoleMessage) -> None:
        if message.type in ("error", "warning"):
            opened.errors.append(message.text)

    def request(req: Request) -> None:
        opened.requests.append(req.url)

    page.on("console", console)
    page.on("pageerror", lambda exc: opened.errors.append(str(exc)))
    page.on("request", request)
    page.goto(url)
    _until(page, "document.getElementById('audio').readyState >= 1")
    return opened


def _until(page: Page, condition: str, timeout_s: float = 20.0) -> None:
    """Wait for a JS condition (polled from here: the page's policy forbids eval, which
    Playwright's own waiting uses)."""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(condition):
        assert time.monotonic() < deadline, f"never true: {condition}"
        time.sleep(0.05)


def _seek(page: Page, seconds: float) -> None:
    page.evaluate(
        """(t) => new Promise((done) => { const a = document.getElementById('audio');
        a.addEventListener('seeked', () => requestAnimationFrame(() => done()), {once: true});
        a.currentTime = t; })""",
        seconds,
    )


def _words(vtt: Path) -> list[tuple[float, str]]:
    """Every word's start, read from the transcript on its own."""
    out = []
    for caption in webvtt.read(str(vtt)).captions:
        if caption.text.startswith("["):
            continue
        raw = caption.raw_text if hasattr(caption, "raw_text") else caption.text
        at = caption.start_in_seconds + int(caption.start.split(".")[-1]) / 1000
        for token in raw.split(" "):
            stamp = re.match(r"<(\d\d):(\d\d):(\d\d\.\d\d\d)>", token)
            if stamp:
                h, m, s = stamp.groups()
                at, token = int(h) * 3600 + int(m) * 60 + float(s), token[stamp.end() :]
            out.append((at, token))
    return out


def test_the_page_opens_from_disk_and_plays_with_nothing_fetched(
    shared: Shared, browser: Browser
) -> None:
    url = (shared.bundle / "box-breathing.html").as_uri()
    opened = _open(browser, url)
    opened.page.click("#play")
    _until(opened.page, "document.getElementById('audio').currentTime > 0.5")
    assert opened.errors == []
    assert opened.requests and all(r.startswith(shared.bundle.as_uri()) for r in opened.requests)
    ARTIFACTS.mkdir(exist_ok=True)
    opened.page.screenshot(path=str(ARTIFACTS / "share-page-360x740.png"))
    wide = _open(browser, url, 1280, 800)
    wide.page.screenshot(path=str(ARTIFACTS / "share-page-1280x800.png"))
    index = _open_index(browser, shared)
    index.screenshot(path=str(ARTIFACTS / "share-index-360x740.png"))


def _open_index(browser: Browser, shared: Shared) -> Page:
    page = browser.new_context(viewport={"width": 360, "height": 740}).new_page()
    page.goto((shared.bundle / "index.html").as_uri())
    return page


def test_the_word_being_spoken_is_highlighted_and_a_click_goes_there(
    shared: Shared, browser: Browser
) -> None:
    page = _open(browser, (shared.bundle / "grounding.html").as_uri()).page
    words = _words(shared.bundle / "grounding.vtt")
    for at, word in random.Random(7).sample(words, 20):
        _seek(page, at + 0.010)
        now = page.eval_on_selector(
            "#transcript [aria-current=true]", "e => [e.textContent, +e.dataset.t]"
        )
        assert now == [word, pytest.approx(at, abs=0.0015)], (at, word)
    for at, word in random.Random(8).sample(words, 5):
        page.click(f'#transcript span[data-t="{at:.3f}"]')
        page.evaluate("document.getElementById('audio').pause()")
        assert page.evaluate("document.getElementById('audio').currentTime") == pytest.approx(
            at, abs=0.050
        ), word


def test_the_pages_chapters_are_the_mp3s(shared: Shared, browser: Browser) -> None:
    page = _open(browser, (shared.bundle / "grounding.html").as_uri()).page
    shown = page.eval_on_selector_all("#chapters button", "bs => bs.map(b => +b.dataset.t)")
    frames = sorted(ID3(shared.bundle / "grounding.mp3").getall("CHAP"), key=lambda c: c.start_time)
    assert len(shown) == len(frames)
    for seconds, frame in zip(shown, frames, strict=True):
        assert abs(seconds * 1000 - frame.start_time) <= 1
    _seek(page, frames[1].start_time / 1000 + 0.5)
    current = page.eval_on_selector("#chapters [aria-current=true]", "e => +e.dataset.t")
    assert abs(current * 1000 - frames[1].start_time) <= 1


def test_the_pacer_follows_the_plans_breaths(shared: Shared, browser: Browser) -> None:
    page = _open(browser, (shared.bundle / "box-breathing.html").as_uri()).page
    timeline = session.timeline(SCRIPTS[0], Options(variables={"client": "Sam"}), Silent())
    rate = timeline.rate
    for breath in random.Random(3).sample(list(timeline.breaths), 10):
        at = (breath.start + (breath.end - breath.start) / 2) / rate
        _seek(page, at)
        assert page.eval_on_selector("#pacer", "e => e.dataset.phase") == breath.kind, at
        assert page.is_visible("#pacer-label")


def test_keys_work_as_in_the_terminal_player(shared: Shared, browser: Browser) -> None:
    page = _open(browser, (shared.bundle / "grounding.html").as_uri()).page
    audio = "document.getElementById('audio')"
    page.keyboard.press(" ")
    _until(page, f"!{audio}.paused")
    page.keyboard.press(" ")
    assert page.evaluate(f"{audio}.paused")
    _seek(page, 30.0)
    page.keyboard.press("ArrowRight")
    assert page.evaluate(f"{audio}.currentTime") == pytest.approx(40.0, abs=0.01)
    page.keyboard.press("ArrowLeft")
    assert page.evaluate(f"{audio}.currentTime") == pytest.approx(30.0, abs=0.01)
    starts = page.eval_on_selector_all("#chapters button", "bs => bs.map(b => +b.dataset.t)")
    _seek(page, starts[1] + 5)
    page.keyboard.press("n")
    assert page.evaluate(f"{audio}.currentTime") == pytest.approx(starts[2], abs=0.01)
    page.keyboard.press("b")
    assert page.evaluate(f"{audio}.currentTime") == pytest.approx(starts[1], abs=0.01)
    page.keyboard.press("-")
    assert page.evaluate(f"{audio}.volume") == pytest.approx(0.9)
    page.keyboard.press("+")
    assert page.evaluate(f"{audio}.volume") == pytest.approx(1.0)


def test_a_reload_offers_the_kept_place(shared: Shared, browser: Browser) -> None:
    page = _open(browser, (shared.bundle / "grounding.html").as_uri()).page
    _seek(page, 42.0)
    page.evaluate("document.getElementById('audio').dispatchEvent(new Event('pause'))")
    page.reload()
    page.wait_for_selector("#resume", state="visible")
    assert page.text_content("#resume-at") == "0:42"
    page.click("#resume-yes")
    assert page.evaluate("document.getElementById('audio').currentTime") == pytest.approx(
        42.0, abs=0.05
    )


@pytest.mark.parametrize("name", ["index.html", "box-breathing.html"])
def test_axe_finds_no_serious_accessibility_violation(
    shared: Shared, browser: Browser, name: str
) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, bypass_csp=True)
    page = context.new_page()
    page.goto((shared.bundle / name).as_uri())
    page.add_script_tag(content=AXE.read_text(encoding="utf-8"))
    results = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    serious = [
        (v["id"], v["help"], [n["html"] for n in v["nodes"]][:3])
        for v in results["violations"]
        if v["impact"] in ("serious", "critical")
    ]
    assert serious == []


def test_share_leaves_no_staging_folder(shared: Shared) -> None:
    assert not [p for p in shared.out.iterdir() if p.name.startswith(".")]
    assert os.stat(shared.bundle).st_mode & 0o777 == 0o700


XSD = Path(__file__).parent / "fixtures" / "specs" / "podcast-namespace.xsd"
PODCAST = "{https://podcastindex.org/namespace/1.0}"


def _schema_errors(element: ET.Element) -> list[str]:
    """The Podcasting 2.0 schema's complaints about one `podcast:` element. The schema has
    no target namespace: the element is checked by its local name."""
    local = ET.Element(element.tag.removeprefix(PODCAST), element.attrib)
    local.text = element.text
    schema = xmlschema.XMLSchema(XSD)
    return [str(error.reason) for error in schema.iter_errors(local)]


def test_the_feeds_podcast_elements_follow_the_namespaces_schema(shared: Shared) -> None:
    root = ET.fromstring((shared.bundle / "feed.xml").read_bytes())
    found = [e for e in root.iter() if e.tag.startswith(PODCAST)]
    assert {e.tag.removeprefix(PODCAST) for e in found} == {"locked", "transcript", "chapters"}
    for element in found:
        assert _schema_errors(element) == [], ET.tostring(element)
    # The check bites: a transcript without its type is refused.
    broken = ET.Element(f"{PODCAST}transcript", {"url": f"{BASE}x.vtt"})
    assert _schema_errors(broken)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_stopped_share_leaves_nothing(tmp_path: Path, signum: int) -> None:
    script = write(
        tmp_path,
        "title: Long\nsections:\n  - title: A\n    steps:\n"
        "      - say: Hello.\n      - pause: 50m\n      - say: Goodbye.\n",
    )
    out = tmp_path / "c"
    process = subprocess.Popen(
        [sys.executable, "-m", "guided_audio", "share", str(script), "-o", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    stderr = interrupt_when_ready(
        process, lambda: bool(list(out.glob(".staging-*/*.partial"))), "the share", signum
    )
    assert process.returncode != 0 and "Traceback" not in stderr, stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["session.yaml"]


def test_reduced_motion_makes_the_pacer_a_count(shared: Shared, browser: Browser) -> None:
    context = browser.new_context(viewport={"width": 360, "height": 740}, reduced_motion="reduce")
    page = context.new_page()
    page.goto((shared.bundle / "box-breathing.html").as_uri())
    timeline = session.timeline(SCRIPTS[0], Options(variables={"client": "Sam"}), Silent())
    breath = timeline.breaths[0]
    _seek(page, (breath.start + breath.end) / 2 / timeline.rate)
    assert not page.is_visible("#pacer-ring")
    assert re.fullmatch(r"Breathe in \d+", page.text_content("#pacer-label") or "")


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "title: Big\nsections:\n  - title: A\n    steps:\n"
        "      - say: Hello.\n      - pause: 20m\n      - say: Goodbye.\n",
    )
    disk = tmp_path / "disk"
    out = disk / "c"
    done = on_a_small_disk(
        disk, [sys.executable, "-m", "guided_audio", "share", str(script), "-o", str(out), "-q"]
    )
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{out} was not written: the disk holding it is full; free some space there or "
        "share into a folder elsewhere with -o"
    ]
    assert done.stdout == ""  # what `ls -A` saw on the small disk: nothing


LIGHT = """\
title: Light
sections:
  - title: A
    steps:
      - say: Slow taps now.
      - bilateral: {passes: 6, speed: 1.0, sound: tap}
      - say: Done.
"""


def test_the_light_is_on_each_sounds_side(tmp_path: Path, browser: Browser) -> None:
    script = write(tmp_path, LIGHT, "light.yaml")
    bundle = _share(tmp_path / "c", "-q", scripts=[script]).bundle
    page = _open(browser, (bundle / "light.html").as_uri()).page
    timeline = session.timeline(script, Options(), Silent())
    passes = [e for e in timeline.events if e.kind == "bilateral"]
    assert len(passes) == 6
    for index, event in enumerate(passes):
        _seek(page, event.start / timeline.rate + 0.010)
        side = page.eval_on_selector("#light", "e => e.dataset.side")
        assert side == ("left" if index % 2 == 0 else "right"), index
    _seek(page, passes[0].start / timeline.rate - 0.5)
    assert not page.is_visible("#light")
