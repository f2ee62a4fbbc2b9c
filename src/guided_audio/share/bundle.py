"""`share`: sessions made into a private folder for one client, and kept that way.

The folder, `OUT/sessions-TOKEN/`, holds the client's index, a page per session, each
session's MP3 with its transcript and chapters, and (given a base URL) a podcast feed. TOKEN
(128 random bits) is made once and kept, with each session's feed guid and first date, in
`OUT/share.json`, which is not published. Everything is built in a private staging folder
and then moved in file by file, only where the bytes changed: the same inputs leave the
bundle byte for byte as it was, and a changed script replaces only its own files.
"""

from __future__ import annotations

import filecmp
import json
import os
import secrets
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from guided_audio import session
from guided_audio.batch import export_many, options_for, speak_all
from guided_audio.errors import GuidedAudioError, Problem, ScriptError, UsageError
from guided_audio.export import transcript
from guided_audio.export.naming import default_output, safe_name
from guided_audio.export.write import write_error
from guided_audio.files import replace_with
from guided_audio.plan.length import length_text
from guided_audio.session import Options, Reporter, Silent
from guided_audio.share import feed, page
from guided_audio.share.feed import Channel, Episode

MANIFEST = "share.json"
FEED = "feed.xml"
FULL_BYTES = 1 << 20  # less free than this where a write failed: the disk is full


@dataclass(frozen=True)
class ShareOptions:
    out: Path  # the folder holding the bundle and its manifest
    base_url: str | None = None  # https, where the bundle's folder will be served
    note: str = ""  # the therapist's words on the index, plain text
    title: str = "Your sessions"
    owner: str = "guided-audio"  # who the feed is locked to (podcast:locked)
    force: bool = False
    jobs: int | None = None


def check_base_url(url: str) -> str:
    """A base URL as the feed needs it (https, ending in "/"), or a UsageError."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise UsageError(f"--base-url {url}: must be an https:// address (the link is the key)")
    return url if url.endswith("/") else f"{url}/"


@dataclass
class Manifest:
    """What a bundle keeps between runs: its token, and each session's guid and date."""

    token: str
    episodes: dict[str, dict[str, str]]

    @classmethod
    def load(cls, folder: Path) -> Manifest:
        path = folder / MANIFEST
        if not path.exists():
            return cls(secrets.token_hex(16), {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(data["token"]), dict(data["episodes"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise GuidedAudioError(
                f"{path} cannot be read ({exc}); restore it, or share into a new folder"
            ) from None

    def episode(self, slug: str, now: datetime) -> tuple[str, datetime]:
        kept = self.episodes.setdefault(
            slug, {"guid": str(uuid.uuid4()), "published": now.isoformat(timespec="seconds")}
        )
        return kept["guid"], datetime.fromisoformat(kept["published"])

    def save(self, folder: Path) -> None:
        text = json.dumps({"token": self.token, "episodes": self.episodes}, indent=2) + "\n"
        _write(folder / MANIFEST, text.encode("utf-8"), mode=0o600)


def share(scripts: list[Path], share_options: ShareOptions, options: Options,
          reporter: Reporter) -> Path:  # fmt: skip
    """Write (or bring up to date) the bundle for `scripts`; returns its folder."""
    out = share_options.out
    if (out / MANIFEST).exists() and not share_options.force:
        raise UsageError(f"{out} already holds a bundle; use --force to bring it up to date")
    if out.exists() and not (out / MANIFEST).exists() and any(out.iterdir()):
        raise UsageError(f"{out} exists and is not a share folder; choose a new folder")
    base_url = check_base_url(share_options.base_url) if share_options.base_url else None
    _check_scripts(scripts, options)
    slugs = [_slug(path, options) for path in scripts]
    if len(set(slugs)) != len(slugs):
        raise UsageError("two scripts would share one name in the bundle; share them apart")
    manifest = Manifest.load(out)
    bundle = out / f"sessions-{manifest.token}"
    made_out = not out.exists()
    try:
        out.mkdir(mode=0o700, parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    except OSError as exc:
        raise write_error(out / MANIFEST, exc) from exc
    try:
        _build(scripts, slugs, staging, manifest, share_options, base_url, options, reporter)
        _publish(staging, bundle)
        manifest.save(out)
    except BaseException as exc:
        told = _as_shared(exc, out, staging) if isinstance(exc, GuidedAudioError) else None
        if made_out:  # a first share that did not finish leaves nothing at all
            shutil.rmtree(out, ignore_errors=True)
        if told is not None:
            raise told from exc
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return bundle


def _as_shared(exc: GuidedAudioError, out: Path, staging: Path) -> GuidedAudioError:
    """A fault met while building, told of the share folder (the staging folder is gone)."""
    if exc.exit_code == 2:
        return exc
    if shutil.disk_usage(staging).free < FULL_BYTES:
        return GuidedAudioError(
            f"{out} was not written: the disk holding it is full; free some space there or "
            "share into a folder elsewhere with -o"
        )
    return GuidedAudioError(
        str(exc).replace(f"{staging}{os.sep}", "").replace(str(staging), str(out))
    )


def _check_scripts(scripts: list[Path], options: Options) -> None:
    """Every script's located errors, all at once, before anything is written."""
    problems: list[Problem] = []
    for path in scripts:
        try:
            session.validate(path, options_for(path, options), Silent())
        except ScriptError as exc:
            problems += exc.problems
    if problems:
        raise ScriptError(problems)


def _slug(path: Path, options: Options) -> str:
    # No --var value joins the name: the client's name is in no file name or URL.
    length = () if options.length_s is None else (length_text(options.length_s),)
    return safe_name(path.stem, *length)


def _build(
    scripts: list[Path],
    slugs: list[str],
    staging: Path,
    manifest: Manifest,
    share_options: ShareOptions,
    base_url: str | None,
    options: Options,
    reporter: Reporter,
) -> None:
    speak_all(scripts, options, reporter)
    with reporter.progress(f"Exporting {len(scripts)} sessions", len(scripts)) as advance:
        for outcome in export_many(scripts, staging, "mp3", options, share_options.jobs):
            if outcome.error is not None:
                kind = UsageError if outcome.exit_code == 2 else GuidedAudioError
                raise kind(outcome.error)
            advance(1)
    now = datetime.now(UTC).replace(microsecond=0)
    entries, episodes = [], []
    for path, slug in zip(scripts, slugs, strict=True):
        exported = default_output(path, "mp3", options.variables, staging, options.length_s)
        for old, new in zip(_files(exported), _files(staging / f"{slug}.mp3"), strict=True):
            old.replace(new)
        one = options_for(path, options)
        script = session.load_with_voices(path, one.variables)
        timeline = session.timeline(path, one, Silent())
        words = session.open_speaker(one, Silent()).words
        guid, published = manifest.episode(slug, now)
        sentences = tuple(
            page.sentence_from_cue(cue.start / timeline.rate, cue.end / timeline.rate, cue.text)
            for cue in transcript.cues(timeline, words)
            if not cue.text.startswith("[")
        )
        view = page.SessionPage(
            key=guid,
            title=script.title,
            description=script.description or "",
            author=script.author or "",
            audio=f"{slug}.mp3",
            transcript=f"{slug}.vtt",
            seconds=timeline.seconds,
            chapters=tuple((s.title, s.start / timeline.rate) for s in timeline.sections),
            sentences=sentences,
            breaths=page.breaths(timeline),
            sets=page.bilateral_sets(timeline),
        )
        _write(staging / f"{slug}.html", page.session_page(view).encode("utf-8"))
        entries.append(page.IndexEntry(f"{slug}.html", script.title, view.description,
                                       timeline.seconds))  # fmt: skip
        episodes.append(
            Episode(
                guid=guid,
                title=script.title,
                description=view.description,
                audio=f"{slug}.mp3",
                audio_bytes=(staging / f"{slug}.mp3").stat().st_size,
                seconds=timeline.seconds,
                transcript=f"{slug}.vtt",
                chapters=f"{slug}.chapters.json",
                page=f"{slug}.html",
                published=published,
            )
        )
    feed_url = None
    if base_url is not None:
        feed_url = f"{base_url}{FEED}"
        channel = Channel(share_options.title, share_options.title, base_url, share_options.owner)
        _write(staging / FEED, feed.feed_xml(channel, episodes))
    index = page.index_page(share_options.title, entries, share_options.note, feed_url)
    _write(staging / "index.html", index.encode("utf-8"))


def _files(mp3: Path) -> tuple[Path, Path, Path]:
    vtt, chapters = session.sidecars(mp3)
    return mp3, vtt, chapters


def _write(path: Path, data: bytes, mode: int = 0o644) -> None:
    try:
        replace_with(path, data, mode)
    except OSError as exc:
        raise write_error(path, exc) from exc


def _publish(staging: Path, bundle: Path) -> None:
    """Move what changed from `staging` into `bundle`, one atomic rename per file; files
    whose bytes are unchanged are left as they were, files no longer made are removed."""
    try:
        bundle.mkdir(mode=0o700, exist_ok=True)
        made = {p.name for p in staging.iterdir() if not p.name.startswith(".")}
        for name in sorted(made):
            old = bundle / name
            if not (old.exists() and filecmp.cmp(staging / name, old, shallow=False)):
                os.chmod(staging / name, 0o644)
                os.replace(staging / name, bundle / name)
        for old in bundle.iterdir():
            if old.name not in made:
                old.unlink()
    except OSError as exc:
        raise write_error(bundle, exc) from exc
