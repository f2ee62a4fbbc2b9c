"""The text normaliser and the sentence/clause cutter, on their own: a table of cases."""

from __future__ import annotations

import pytest

from guided_audio.script import text


@pytest.mark.parametrize(
    ("written", "spoken"),
    [
        pytest.param("5-4-3-2-1", "five, four, three, two, one", id="count-down"),
        pytest.param("1-2-3", "one, two, three", id="count-up"),
        pytest.param("4-7-8", "four seven eight", id="pattern-name"),
        pytest.param("2-3 minutes", "two to three minutes", id="range"),
        pytest.param("10 min", "ten minutes", id="minutes-apart"),
        pytest.param("1 min", "one minute", id="one-minute"),
        pytest.param("90s", "ninety seconds", id="seconds-joined"),
        pytest.param("5 secs", "five seconds", id="secs"),
        pytest.param("2h", "two hours", id="hours"),
        pytest.param("1:30", "one minute thirty seconds", id="clock-duration"),
        pytest.param("2:00", "two minutes", id="whole-minutes"),
        pytest.param("1st", "first", id="first"),
        pytest.param("3rd", "third", id="third"),
        pytest.param("21st", "twenty-first", id="twenty-first"),
        pytest.param("40th", "fortieth", id="fortieth"),
        pytest.param("12th", "twelfth", id="twelfth"),
        pytest.param("100", "one hundred", id="hundred"),
        pytest.param("1,000", "one thousand", id="thousands-comma"),
        pytest.param("1.5", "one point five", id="decimal"),
        pytest.param("50%", "fifty percent", id="percent"),
        pytest.param("Dr. Reyes", "Doctor Reyes", id="doctor"),
        pytest.param("e.g. a chair", "for example a chair", id="e.g."),
        pytest.param("i.e. now", "that is now", id="i.e."),
        pytest.param("approx. 5", "approximately five", id="approx"),
        pytest.param("you & me", "you and me", id="ampersand"),
        pytest.param("LMFT", "LMFT", id="initials-left-to-the-engine"),
    ],
)
def test_words_are_said_as_a_guide_says_them(written: str, spoken: str) -> None:
    assert " ".join(f.spoken for f in text.fragments(written)) == spoken


@pytest.mark.parametrize(
    ("said", "fragments"),
    [
        pytest.param("Welcome. Rest here.", [("Welcome.", "sentence"), ("Rest here.", "end")],
                     id="sentences"),
        pytest.param("Dr. Reyes is here. Rest.", [("Doctor Reyes is here.", "sentence"),
                                                   ("Rest.", "end")], id="abbreviation"),
        pytest.param("Sit down, e.g. on a chair.",
                     [("Sit down,", "clause"), ("for example on a chair.", "end")], id="e.g."),
        pytest.param("Hello, friend.", [("Hello, friend.", "end")], id="one-word-clause-stays"),
        pytest.param("Breathe in... and out... Rest.",
                     [("Breathe in,", "clause"), ("and out.", "sentence"), ("Rest.", "end")],
                     id="ellipses"),
        pytest.param("Be calm\u2014and slow \u2014 and soft.",
                     [("Be calm,", "clause"), ("and slow,", "clause"), ("and soft.", "end")],
                     id="dashes"),
        pytest.param("It costs 1.5 breaths.", [("It costs one point five breaths.", "end")],
                     id="decimal-is-no-sentence-end"),
        pytest.param("Rest for 10 min. Then stop.",
                     [("Rest for ten minutes.", "sentence"), ("Then stop.", "end")],
                     id="unit-ends-a-sentence"),
        pytest.param('She said "rest." Then stop.', [('She said "rest."', "sentence"),
                                                     ("Then stop.", "end")], id="quotes"),
    ],
)  # fmt: skip
def test_text_is_cut_at_sentences_and_clauses(said: str, fragments: list[tuple[str, str]]) -> None:
    assert [(f.spoken, f.ends) for f in text.fragments(said)] == fragments


def test_written_words_keep_their_spoken_counts() -> None:
    (fragment,) = text.fragments("Count 5-4-3-2-1 for 10 min.")
    assert fragment.written == "Count 5-4-3-2-1 for 10 min."
    assert [(w.written, w.spoken) for w in fragment.words] == [
        ("Count", 1), ("5-4-3-2-1", 5), ("for", 1), ("10", 2), ("min.", 0)
    ]  # fmt: skip


def test_pronounce_overrides_any_word_keeping_its_punctuation() -> None:
    said = text.fragments("Hello Reyes, and LMFT.", {"reyes": "RAY-ess", "lmft": "[[ ˈɛl ]]"})
    assert [f.spoken for f in said] == ["Hello RAY-ess,", "and [[ ˈɛl ]]."]
    assert text.spoken_words("and [[ ˈɛl ˈɛm ]].") == 3


@pytest.mark.parametrize("n", [0, 7, 13, 20, 45, 99, 100, 101, 999, 1000, 1001, 123456])
def test_number_words_round_trip_through_a_reader(n: int) -> None:
    # A tiny reader of our own words: sums the values back.
    values = {w: i for i, w in enumerate(text.ONES)}
    values |= {w: 10 * i for i, w in enumerate(text.TENS) if w != "_"}
    total = current = 0
    for word in text.number_words(n).replace("-", " ").split():
        if word == "hundred":
            current *= 100
        elif word in ("thousand", "million"):
            total += current * (1000 if word == "thousand" else 10**6)
            current = 0
        else:
            current += values[word]
    assert total + current == n
