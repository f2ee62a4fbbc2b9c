"""Speech on every core: phrases rendered into the cache by worker processes forked from
this one after its voices have loaded (each worker shares them and runs one inference
thread), while this process goes on with work of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager

from guided_audio.files import exit_quietly_on_signals
from guided_audio.forking import forked_pool
from guided_audio.script.model import Phrase
from guided_audio.speech.speaker import Speaker

MIN_PHRASES_PER_WORKER = 2  # a worker forks in milliseconds (the voices are loaded before)
_worker_speaker: Speaker | None = None  # a worker process's own, set as it starts


@contextmanager
def speaking(
    speaker: Speaker, phrases: list[Phrase], advance: Callable[[int], None]
) -> Iterator[None]:
    """Render `phrases` into the cache on `speaker.resources.workers` processes; the body of
    the `with` runs here meanwhile (once they have forked), and leaving it waits for them.
    Each result reaches the cache as it would from one process; if a worker dies (out of
    memory, say), what is left is rendered here, one by one."""
    workers = min(speaker.resources.workers, len(phrases) // MIN_PHRASES_PER_WORKER)
    if workers <= 1 or not speaker.ready_to_fork(phrases):
        yield
        for phrase in phrases:
            speaker.render(phrase)
            advance(1)
        # The mix that follows needs no voice (a batch's worker loads it again for its next
        # file: 0.6 s, and 70 MiB less while it mixes).
        speaker.release_voices()
        return
    done: set[Phrase] = set()
    try:
        # Longest first: the last lines handed out are short, so no core waits long at the
        # end for another to finish.
        ordered = sorted(phrases, key=lambda phrase: len(phrase.text), reverse=True)
        with forked_pool(workers, _start_worker, (speaker.for_worker(),)) as pool:
            spoken = pool.map(_render_in_worker, ordered)  # every worker forks here
            yield
            for phrase, _ in zip(ordered, spoken, strict=True):
                done.add(phrase)
                advance(1)
    except BrokenProcessPool:
        for phrase in phrases:
            if phrase not in done:
                speaker.render(phrase)
                advance(1)
    speaker.release_voices()  # loaded for the workers only: the mix that follows needs none
    speaker.note_damage()


def _start_worker(speaker: Speaker) -> None:
    """A worker's start (its pool forks it: `speaker` is the parent's own, not a copy
    sent through a pipe)."""
    global _worker_speaker
    exit_quietly_on_signals()
    _worker_speaker = speaker


def _render_in_worker(phrase: Phrase) -> int:
    assert _worker_speaker is not None
    return len(_worker_speaker.render(phrase))
