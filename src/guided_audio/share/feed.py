"""The private podcast feed of a share bundle: RSS 2.0 with the itunes: and Podcasting 2.0
namespaces, written with the standard library's XML writer. The same inputs give the same
bytes (no clock is read here), so a podcast app downloads nothing again."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import format_datetime
from urllib.parse import quote, urlsplit

ITUNES = "http://www.itunes.com/dtds/podcast-1.0.dtd"
PODCAST = "https://podcastindex.org/namespace/1.0"
ATOM = "http://www.w3.org/2005/Atom"
NAMESPACES = {"itunes": ITUNES, "podcast": PODCAST, "atom": ATOM}


@dataclass(frozen=True)
class Episode:
    guid: str  # made once and kept: isPermaLink="false"
    title: str
    description: str
    audio: str  # file names, relative to the base URL
    audio_bytes: int
    seconds: float
    transcript: str
    chapters: str
    page: str
    published: datetime  # timezone-aware (UTC)


@dataclass(frozen=True)
class Channel:
    title: str
    description: str
    base_url: str  # https, ending in "/"
    owner: str  # who the feed is locked to (podcast:locked)
    language: str = "en"
    image: str | None = None  # a cover image's file name, relative to the base URL


def duration_text(seconds: float) -> str:
    """itunes:duration: H:MM:SS, to the nearest whole second."""
    hours, rest = divmod(round(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, attributes)
    if text is not None:
        element.text = text
    return element


def feed_xml(channel: Channel, episodes: Sequence[Episode]) -> bytes:
    """The feed, as UTF-8 bytes with an XML declaration."""
    base = channel.base_url
    if urlsplit(base).scheme != "https" or not base.endswith("/"):
        raise ValueError(f"a feed's base URL is https and ends with '/': {base}")
    naive = [e.guid for e in episodes if e.published.utcoffset() is None]
    if naive:
        raise ValueError(f"an episode's published time needs a time zone: {naive[0]}")

    def url(name: str) -> str:
        return base + quote(name)

    for prefix, uri in NAMESPACES.items():
        ET.register_namespace(prefix, uri)
    rss = ET.Element("rss", {"version": "2.0"})
    ch = _sub(rss, "channel")
    _sub(ch, "title", channel.title)
    _sub(ch, "link", url("index.html"))
    _sub(ch, "description", channel.description)
    _sub(ch, "language", channel.language)
    _sub(ch, f"{{{ATOM}}}link", href=url("feed.xml"), rel="self", type="application/rss+xml")
    if episodes:
        newest = max(e.published for e in episodes)
        _sub(ch, "lastBuildDate", format_datetime(newest))
    _sub(ch, "generator", "guided-audio")
    _sub(ch, f"{{{ITUNES}}}author", channel.owner)
    _sub(ch, f"{{{ITUNES}}}explicit", "false")
    _sub(ch, f"{{{ITUNES}}}block", "yes")  # kept out of every directory
    _sub(ch, f"{{{PODCAST}}}locked", "yes", owner=channel.owner)
    if channel.image is not None:
        _sub(ch, f"{{{ITUNES}}}image", href=url(channel.image))
    for episode in episodes:
        item = _sub(ch, "item")
        _sub(item, "title", episode.title)
        _sub(item, "link", url(episode.page))
        _sub(item, "description", episode.description)
        _sub(item, "guid", episode.guid, isPermaLink="false")
        _sub(item, "pubDate", format_datetime(episode.published))
        _sub(item, "enclosure", url=url(episode.audio), length=str(episode.audio_bytes),
             type="audio/mpeg")  # fmt: skip
        _sub(item, f"{{{ITUNES}}}duration", duration_text(episode.seconds))
        _sub(item, f"{{{ITUNES}}}episodeType", "full")
        _sub(item, f"{{{PODCAST}}}transcript", url=url(episode.transcript), type="text/vtt",
             rel="captions")  # fmt: skip
        _sub(item, f"{{{PODCAST}}}chapters", url=url(episode.chapters),
             type="application/json+chapters")  # fmt: skip
    ET.indent(rss)
    data: bytes = ET.tostring(rss, encoding="utf-8", xml_declaration=True)
    return data + b"\n"
