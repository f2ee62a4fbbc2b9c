"""The share bundle's private podcast feed, read back as podcast apps read it (feedparser,
podcastparser), its `podcast:` elements checked against the Podcasting 2.0 schema, and its
bytes the same for the same inputs."""

from __future__ import annotations

import calendar
import io
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import feedparser
import podcastparser
import pytest
import xmlschema

from guided_audio.share.feed import Channel, Episode, duration_text, feed_xml

XSD = Path(__file__).parent / "fixtures" / "specs" / "podcast-namespace.xsd"
PODCAST = "{https://podcastindex.org/namespace/1.0}"
OLD_PODCAST = "https://github.com/Podcastindex-org/podcast-namespace/blob/main/docs/1.0.md"
BASE = "https://example.org/c/5f0c2a9e/"
CHANNEL = Channel(
    title="Sam's sessions",
    description="The practices we did together.",
    base_url=BASE,
    owner="therapist@example.org",
    image="cover art.png",
)
DAY = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
EPISODES = [
    Episode(
        guid="0b6f3c4e-9d1a-4a57-8f0e-2c1d7e5b9a10",
        title="Körper-Scan — ruhig",
        description="Ein Körper-Scan, langsam.",
        audio="körper scan.mp3",
        audio_bytes=1_234_567,
        seconds=3725.4,
        transcript="körper scan.vtt",
        chapters="körper scan.chapters.json",
        page="körper scan.html",
        published=DAY,
    ),
    Episode(
        guid="7d2e8a1b-3c4f-4e5d-9a6b-0f1e2d3c4b5a",
        title="Box breathing",
        description="Four counts in, hold, out, hold.",
        audio="box-breathing.mp3",
        audio_bytes=4321,
        seconds=305.6,
        transcript="box-breathing.vtt",
        chapters="box-breathing.chapters.json",
        page="box-breathing.html",
        published=DAY + timedelta(days=2),  # the newest: the feed's lastBuildDate
    ),
    Episode(
        guid="c3a1e5f7-2b4d-4c6e-8a0b-1d3f5e7a9c2b",
        title="Grounding",
        description="Five things you can see.",
        audio="grounding.mp3",
        audio_bytes=98_765,
        seconds=59.2,
        transcript="grounding.vtt",
        chapters="grounding.chapters.json",
        page="grounding.html",
        published=DAY + timedelta(days=1),
    ),
]
# Each episode's files as absolute URLs, written out by hand: "körper scan" is quoted.
SUFFIXES = {"audio": ".mp3", "transcript": ".vtt", "chapters": ".chapters.json", "page": ".html"}
URLS = [
    {name: f"{BASE}{stem}{suffix}" for name, suffix in SUFFIXES.items()}
    for stem in ["k%C3%B6rper%20scan", "box-breathing", "grounding"]
]
DURATIONS = ["1:02:05", "0:05:06", "0:00:59"]


@pytest.fixture(scope="module")
def data() -> bytes:
    return feed_xml(CHANNEL, EPISODES)


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(XSD)


def schema_errors(schema: xmlschema.XMLSchema, element: ET.Element) -> list[str]:
    """The schema's complaints about one `podcast:` element. The schema has no target
    namespace, so the element (and anything under it) is copied without the namespace and
    checked against the schema's global element of its local name."""

    def local(source: ET.Element) -> ET.Element:
        assert source.tag.startswith(PODCAST), source.tag
        copy = ET.Element(source.tag.removeprefix(PODCAST), dict(source.attrib))
        copy.text, copy.tail = source.text, None
        copy.extend(local(child) for child in source)
        return copy

    copy = local(element)
    assert copy.tag in schema.elements, f"the schema has no element {copy.tag}"
    return [str(error.reason) for error in schema.iter_errors(copy)]


def test_the_feed_is_rss_2_declaring_its_namespaces(data: bytes) -> None:
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n<rss ")
    for declaration in [
        b'version="2.0"',
        b'xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"',
        b'xmlns:podcast="https://podcastindex.org/namespace/1.0"',
        b'xmlns:atom="http://www.w3.org/2005/Atom"',
    ]:
        assert declaration in data.split(b">", 2)[1], declaration
    assert "Körper-Scan — ruhig".encode() in data  # UTF-8, not character references


def test_feedparser_reads_back_every_field(data: bytes) -> None:
    parsed = feedparser.parse(data)
    assert parsed.bozo == 0, parsed.get("bozo_exception")
    assert parsed.version == "rss20"
    channel = parsed.feed
    assert channel.title == CHANNEL.title
    assert channel.link == f"{BASE}index.html"
    assert channel.subtitle == CHANNEL.description  # feedparser's name for <description>
    assert channel.language == "en"
    assert channel.author == CHANNEL.owner
    assert channel.itunes_block == 1
    assert channel.image.href == f"{BASE}cover%20art.png"
    assert channel.podcast_locked == {"owner": CHANNEL.owner}  # its text ("yes") is dropped
    assert {"rel": "self", "type": "application/rss+xml", "href": f"{BASE}feed.xml"} in [
        dict(link) for link in channel.links
    ]
    newest = max(e.published for e in EPISODES)
    assert calendar.timegm(channel.updated_parsed) == newest.timestamp()
    assert len(parsed.entries) == len(EPISODES)
    for entry, episode, urls, duration in zip(
        parsed.entries, EPISODES, URLS, DURATIONS, strict=True
    ):
        assert entry.title == episode.title
        assert entry.link == urls["page"]
        assert entry.summary == episode.description
        assert entry.id == episode.guid and entry.guidislink is False
        [enclosure] = entry.enclosures
        assert enclosure.href == urls["audio"]
        assert enclosure.length == str(episode.audio_bytes)
        assert enclosure.type == "audio/mpeg"
        assert entry.itunes_duration == duration
        assert entry.itunes_episodetype == "full"
        assert calendar.timegm(entry.published_parsed) == episode.published.timestamp()
        assert entry.podcast_transcript == {
            "url": urls["transcript"], "type": "text/vtt", "rel": "captions"
        }  # fmt: skip
        assert entry.podcast_chapters == {
            "url": urls["chapters"], "type": "application/json+chapters"
        }  # fmt: skip


def _podcastparser(data: bytes) -> dict[str, Any]:
    parsed: dict[str, Any] = podcastparser.parse(f"{BASE}feed.xml", io.BytesIO(data))
    return parsed


def test_podcastparser_reads_back_every_episode(data: bytes) -> None:
    podcast = _podcastparser(data)
    assert podcast["title"] == CHANNEL.title
    assert podcast["link"] == f"{BASE}index.html"
    assert podcast["description"] == CHANNEL.description
    assert podcast["cover_url"] == f"{BASE}cover%20art.png"
    assert podcast["itunes_author"] == CHANNEL.owner
    assert podcast["explicit"] is False
    # podcastparser sorts its episodes newest first; match them by guid.
    episodes = {e["guid"]: e for e in podcast["episodes"]}
    assert sorted(episodes) == sorted(e.guid for e in EPISODES)
    for episode, urls, duration in zip(EPISODES, URLS, DURATIONS, strict=True):
        read = episodes[episode.guid]
        assert read["title"] == episode.title
        assert read["description"] == episode.description
        assert read["link"] == urls["page"]
        assert read["enclosures"] == [
            {"url": urls["audio"], "file_size": episode.audio_bytes, "mime_type": "audio/mpeg"}
        ]
        assert read["total_time"] == round(episode.seconds)
        assert duration_text(read["total_time"]) == duration
        assert read["published"] == episode.published.timestamp()
        assert read["type"] == "full"
        # podcastparser 0.6.11 knows the podcast: namespace only by its old GitHub address,
        # so it reads no podcast: element of this feed; when it does, the URLs are these.
        assert read.get("transcript_url", urls["transcript"]) == urls["transcript"]
        assert read.get("chapters_json_url", urls["chapters"]) == urls["chapters"]
    assert podcast.get("import_prohibited", True) is True


def test_podcastparser_reads_the_podcast_elements_under_the_old_namespace_address(
    data: bytes,
) -> None:
    """The namespace asks readers to take its old address as the same namespace; under it,
    podcastparser reads the transcript, the chapters and the lock as the feed writes them."""
    podcast = _podcastparser(data.replace(PODCAST[1:-1].encode(), OLD_PODCAST.encode()))
    assert podcast["import_prohibited"] is True
    episodes = {e["guid"]: e for e in podcast["episodes"]}
    for episode, urls in zip(EPISODES, URLS, strict=True):
        assert episodes[episode.guid]["transcript_url"] == urls["transcript"]
        assert episodes[episode.guid]["chapters_json_url"] == urls["chapters"]


def test_every_podcast_element_follows_the_namespaces_schema(
    data: bytes, schema: xmlschema.XMLSchema
) -> None:
    found = [e for e in ET.fromstring(data).iter() if e.tag.startswith(PODCAST)]
    tags = sorted(e.tag.removeprefix(PODCAST) for e in found)
    assert tags == ["chapters"] * 3 + ["locked"] + ["transcript"] * 3
    for element in found:
        assert schema_errors(schema, element) == [], ET.tostring(element)


@pytest.mark.parametrize(
    ("tag", "attributes", "text", "complaint"),
    [
        ("transcript", {"url": f"{BASE}x.vtt"}, None, "missing required attribute 'type'"),
        ("chapters", {"type": "application/json+chapters"}, None, "attribute 'url'"),
        ("locked", {"owner": "therapist@example.org"}, "maybe", "must be one of"),
        ("locked", {}, "yes", "missing required attribute 'owner'"),
        ("chapters", {"url": "u", "type": "t", "lang": "en"}, None, "'lang' attribute not"),
    ],
    ids=["transcript-without-type", "chapters-without-url", "locked-maybe",
         "locked-without-owner", "chapters-with-stray-attribute"],
)  # fmt: skip
def test_the_schema_check_rejects_a_broken_element(
    schema: xmlschema.XMLSchema,
    tag: str,
    attributes: dict[str, str],
    text: str | None,
    complaint: str,
) -> None:
    element = ET.Element(f"{PODCAST}{tag}", attributes)
    element.text = text
    errors = schema_errors(schema, element)
    assert any(complaint in error for error in errors), errors


def test_the_same_inputs_give_the_same_bytes(data: bytes) -> None:
    again = [replace(e) for e in reversed(EPISODES)][::-1]  # equal, not the same objects
    assert feed_xml(replace(CHANNEL), again) == data
    assert feed_xml(CHANNEL, EPISODES) == data


def test_without_an_image_there_is_no_itunes_image(data: bytes) -> None:
    plain = feed_xml(replace(CHANNEL, image=None), EPISODES)
    assert b"itunes:image" not in plain and b"itunes:image" in data
    assert "image" not in feedparser.parse(plain).feed


@pytest.mark.parametrize(
    "base_url",
    ["http://example.org/c/", "https://example.org/c", "ftp://example.org/c/", "example.org/c/"],
)
def test_a_base_url_not_https_or_not_ending_in_a_slash_is_refused(base_url: str) -> None:
    with pytest.raises(ValueError, match="base URL"):
        feed_xml(replace(CHANNEL, base_url=base_url), EPISODES)


def test_a_published_time_without_a_time_zone_is_refused() -> None:
    naive = replace(EPISODES[0], published=DAY.replace(tzinfo=None))
    with pytest.raises(ValueError, match="time zone"):
        feed_xml(CHANNEL, [naive])


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(3725.4, "1:02:05"), (305.6, "0:05:06"), (59.2, "0:00:59"), (0.0, "0:00:00"),
     (3599.6, "1:00:00"), (36_000.0, "10:00:00")],
)  # fmt: skip
def test_itunes_duration_is_h_mm_ss(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text
    episode = replace(EPISODES[1], seconds=seconds)
    assert f"<itunes:duration>{text}</itunes:duration>".encode() in feed_xml(CHANNEL, [episode])
