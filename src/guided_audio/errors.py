"""One error family for the whole project; the CLI turns it into a message and an exit code."""

from __future__ import annotations

from dataclasses import dataclass


class GuidedAudioError(Exception):
    """Base of every error the CLI reports as a message (never a traceback)."""

    exit_code = 1


class UsageError(GuidedAudioError):
    """The command line asked for something impossible (bad --var, existing output, ...)."""

    exit_code = 2


class EngineError(GuidedAudioError):
    """A speech engine could not be used or failed while synthesising."""


class DecodeError(GuidedAudioError):
    """An audio file could not be decoded: damaged, or not audio."""


class MissingProgramError(EngineError):
    """A program the job needs (ffmpeg, espeak-ng) is not installed."""


class AudioDeviceError(GuidedAudioError):
    """No sound output is available."""


@dataclass(frozen=True)
class Location:
    path: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Problem:
    location: Location | None
    path: str
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = str(self.location) if self.location else self.path
        text = f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class Invalid(Exception):
    """Raised by a validator through a node; collected into a ScriptError."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


class ScriptError(GuidedAudioError):
    """One or more problems in a script file, each with its location."""

    exit_code = 2

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))
