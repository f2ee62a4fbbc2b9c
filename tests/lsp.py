"""The real yaml-language-server, driven over stdio: what an editor says about a script.

VS Code (the Red Hat YAML extension), Neovim and others check scripts with this server and
our JSON Schema; tests compare what it reports with what our validator reports. The server is
the npm package pinned in tests/editor/package.json (`./test.sh` installs it, or
`cd tests/editor && npm ci`). A test module shares one server, and marks its tests
`@needs_server`:

    with YamlLanguageServer(root, schemas={schema_path().as_uri(): ["scripts/*.yaml"]}) as s:
        s.diagnostics(path)  # [Diagnostic(line=6, column=16, ..., message=...)]
        s.completions(path, text, line=6, column=9)  # [CompletionItem(label="say", ...)]
        s.schemas_for(path)  # the schema URIs it applies to the file

`schemas` is VS Code's `yaml.schemas` setting: a schema's URI or path (relative: to `root`)
-> globs of the files it checks; the server puts `**/` before each glob. Answers come in a
fixed order: settings are applied before any document opens, and each edit's diagnostics
are awaited before the next edit. Every wait has a timeout: a server that hangs or dies
fails the test with what it wrote to stderr, never hangs it.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import queue
import shutil
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import pytest

EDITOR = Path(__file__).parent / "editor"
SERVER = EDITOR / "node_modules" / "yaml-language-server" / "bin" / "yaml-language-server"
INSTALL = "run ./test.sh or: cd tests/editor && npm ci"
TIMEOUT = 30.0  # seconds for any one answer; a loaded CI machine is slow, a hung server slower

# LSP CompletionItemKind numbers, for reading results.
COMPLETION_KINDS = {
    1: "Text", 2: "Method", 3: "Function", 4: "Constructor", 5: "Field", 6: "Variable",
    7: "Class", 8: "Interface", 9: "Module", 10: "Property", 11: "Unit", 12: "Value",
    13: "Enum", 14: "Keyword", 15: "Snippet", 16: "Color", 17: "File", 18: "Reference",
    19: "Folder", 20: "EnumMember", 21: "Constant", 22: "Struct", 23: "Event",
    24: "Operator", 25: "TypeParameter",
}  # fmt: skip


# Without node, tests that need the server skip, except in CI, where they must run.
needs_server = pytest.mark.skipif(
    shutil.which("node") is None and not os.environ.get("CI"),
    reason=f"node is not installed (CI runs these): {INSTALL}",
)


class LanguageServerError(RuntimeError):
    """The server is missing, died, broke the protocol or did not answer in time."""


@dataclass(frozen=True)
class Diagnostic:
    """One problem the editor underlines; line and column 1-based, in characters, like the
    validator's FILE:LINE:COL."""

    line: int
    column: int
    end_line: int
    end_column: int
    message: str
    severity: int | None  # 1 error, 2 warning (the server reports warnings as errors)
    source: str | None


@dataclass(frozen=True)
class CompletionItem:
    """One suggestion. `insert_text` is what accepting it inserts (the server sends it both as
    insertText and as a text edit); `snippet`: it is in snippet syntax, where $1 and ${1:0}
    are placeholders. `raw` is the item as the server sent it."""

    label: str
    kind: str | None
    documentation: str | None
    insert_text: str | None
    snippet: bool
    detail: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)


def settings(schemas: dict[str, list[str]]) -> dict[str, Any]:
    """The `yaml` settings section an editor would send."""
    return {
        "validate": True,
        "completion": True,
        "hover": True,
        "schemaStore": {"enable": False},  # no network: only our schema
        "schemas": schemas,
        "format": {"enable": False},
        "yamlVersion": "1.2",
    }


def _utf16_column(line_text: str, column: int) -> int:
    """A 1-based character column as the 0-based UTF-16 offset LSP positions use."""
    return len(line_text[: column - 1].encode("utf-16-le")) // 2


def _char_column(line_text: str, utf16: int) -> int:
    """An LSP position's 0-based UTF-16 offset as a 1-based character column."""
    encoded = line_text.encode("utf-16-le")
    return len(encoded[: utf16 * 2].decode("utf-16-le", errors="ignore")) + 1


def _plain(documentation: Any) -> str | None:
    if documentation is None or isinstance(documentation, str):
        return documentation
    return str(documentation.get("value", ""))  # MarkupContent


class YamlLanguageServer:
    """One yaml-language-server process, initialized like an editor with `root` as its
    workspace folder and `schemas` as its `yaml.schemas` setting."""

    def __init__(self, root: Path, schemas: dict[str, list[str]], timeout: float = TIMEOUT) -> None:
        self.root = root.resolve()
        self.settings = settings(schemas)
        self.timeout = timeout
        self.server_info: dict[str, Any] = {}
        self.log: list[str] = []  # window/logMessage and showMessage texts
        self._ids = itertools.count(1)
        self._messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._responses: dict[int, dict[str, Any]] = {}
        self._published: dict[str, deque[list[dict[str, Any]]]] = {}
        self._versions: dict[str, int] = {}
        self._texts: dict[str, str] = {}
        self._stderr: deque[str] = deque(maxlen=200)
        self._ended = False  # the server closed its output
        self._write_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._process: subprocess.Popen[bytes] | None = None

    # --- lifetime -----------------------------------------------------------------------------
    def __enter__(self) -> YamlLanguageServer:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        node = shutil.which("node")
        if node is None:
            raise LanguageServerError(f"node is not installed: {INSTALL}")
        if not SERVER.is_file():
            raise LanguageServerError(f"yaml-language-server is not installed: {INSTALL}")
        self._process = subprocess.Popen(
            [node, str(SERVER), "--stdio"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=self.root,
        )
        assert self._process.stdout is not None and self._process.stderr is not None
        for target, stream in (
            (self._read, self._process.stdout),
            (self._drain, self._process.stderr),
        ):
            thread = threading.Thread(target=target, args=(stream,), daemon=True)
            thread.start()
            self._threads.append(thread)
        try:
            self._initialize()
        except BaseException:
            self.close()
            raise

    def _initialize(self) -> None:
        root = self.root.as_uri()
        capabilities = {
            "workspace": {
                "configuration": True,
                "workspaceFolders": True,
                "didChangeConfiguration": {"dynamicRegistration": True},
            },
            "textDocument": {
                "synchronization": {"dynamicRegistration": False, "didSave": True},
                "publishDiagnostics": {"relatedInformation": True},
                "completion": {
                    "completionItem": {
                        "snippetSupport": True,
                        "documentationFormat": ["markdown", "plaintext"],
                        "insertReplaceSupport": False,
                    },
                    "contextSupport": True,
                },
                "hover": {"contentFormat": ["markdown", "plaintext"]},
                # No textDocument.formatting.dynamicRegistration: with it the server registers
                # its didChangeConfiguration handler only after a round trip to us, and drops
                # a didChangeConfiguration that arrives meanwhile.
            },
        }
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "clientInfo": {"name": "guided-audio tests"},
                "locale": "en",
                "rootUri": root,
                "workspaceFolders": [{"uri": root, "name": self.root.name}],
                "capabilities": capabilities,
            },
        )
        self.server_info = dict(result.get("serverInfo") or {})
        self.notify("initialized", {})
        # The server pulls its settings (workspace/configuration) on `initialized` and again
        # on this notification; some clients only push them here.
        self.notify("workspace/didChangeConfiguration", {"settings": {"yaml": self.settings}})
        # A barrier: the server answers codeLens only once its latest settings pull has been
        # applied, so documents opened after it are checked against the schemas at once.
        self.request("textDocument/codeLens", {"textDocument": {"uri": f"{root}/.settled.yaml"}})

    def close(self) -> None:
        """`shutdown`, `exit`, then wait; kill a server that does not leave in time."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                try:
                    self.request("shutdown", None, timeout=5)
                    self.notify("exit", None)
                except LanguageServerError:
                    process.kill()  # it does not answer: no use waiting for it to leave
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        finally:
            self._process = None
            for thread in self._threads:
                thread.join(timeout=5)
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()

    # --- what tests ask -----------------------------------------------------------------------
    def diagnostics(self, path: Path) -> list[Diagnostic]:
        """What the editor reports for the file as it is on disk."""
        text = path.read_text(encoding="utf-8")
        uri = self._show(path, text)
        lines = text.split("\n")
        out = []
        for d in self._next_published(uri):
            start, end = d["range"]["start"], d["range"]["end"]
            out.append(
                Diagnostic(
                    line=start["line"] + 1,
                    column=_char_column(_line(lines, start["line"]), start["character"]),
                    end_line=end["line"] + 1,
                    end_column=_char_column(_line(lines, end["line"]), end["character"]),
                    message=d["message"],
                    severity=d.get("severity"),
                    source=d.get("source"),
                )
            )
        return sorted(out, key=lambda d: (d.line, d.column, d.message))

    def completions(self, path: Path, text: str, line: int, column: int) -> list[CompletionItem]:
        """What the editor offers at LINE:COL (1-based) when `path` holds `text` (unsaved, as
        in an editor: the file itself is not read)."""
        uri = self._show(path, text)
        position = {
            "line": line - 1,
            "character": _utf16_column(_line(text.split("\n"), line - 1), column),
        }
        result = self.request(
            "textDocument/completion",
            {"textDocument": {"uri": uri}, "position": position, "context": {"triggerKind": 1}},
        )
        # The edit is checked too; waiting for that keeps one publish per edit, in order.
        self._next_published(uri)
        items = result if isinstance(result, list) else (result or {}).get("items", [])
        return [_completion(item) for item in items]

    def schemas_for(self, path: Path) -> list[str]:
        """The URIs of the schemas the server applies to `path`: from `schemas`, or from a
        `$schema` modeline, which wins. A test that expects no diagnostics asks this first,
        or it would pass with no schema at all."""
        text = path.read_text(encoding="utf-8")
        uri = path.resolve().as_uri()
        if self._texts.get(uri) != text:
            self._next_published(self._show(path, text))
        result = self.request("yaml/get/jsonSchema", uri)
        return [str(schema["uri"]) for schema in result or []]

    # --- documents ----------------------------------------------------------------------------
    def _show(self, path: Path, text: str) -> str:
        """Open the document, or replace its text; the server checks it 200 ms later and
        publishes the result. Each caller waits for that publish before the next edit, so
        publishes pair with edits one to one (the server cancels a check still waiting when
        the next edit arrives, and would then publish once for two edits)."""
        uri = path.resolve().as_uri()
        self._published.pop(uri, None)  # nothing is due before this edit
        version = self._versions.get(uri, 0) + 1
        self._versions[uri] = version
        self._texts[uri] = text
        if version == 1:
            document = {"uri": uri, "languageId": "yaml", "version": version, "text": text}
            self.notify("textDocument/didOpen", {"textDocument": document})
        else:
            self.notify(
                "textDocument/didChange",
                {
                    "textDocument": {"uri": uri, "version": version},
                    "contentChanges": [{"text": text}],
                },
            )
        return uri

    def _next_published(self, uri: str) -> list[dict[str, Any]]:
        deadline = time.monotonic() + self.timeout
        while not self._published.get(uri):
            self._pump(deadline, f"diagnostics for {uri}")
        return self._published[uri].popleft()

    # --- JSON-RPC -----------------------------------------------------------------------------
    def request(self, method: str, params: Any, timeout: float | None = None) -> Any:
        """Send a request and return its result; an error answer raises."""
        ident = next(self._ids)
        self._send({"jsonrpc": "2.0", "id": ident, "method": method, "params": params})
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while ident not in self._responses:
            self._pump(deadline, f"its answer to {method}")
        answer = self._responses.pop(ident)
        if "error" in answer:
            raise LanguageServerError(f"{method} failed: {answer['error']}")
        return answer.get("result")

    def notify(self, method: str, params: Any) -> None:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def _send(self, message: dict[str, Any]) -> None:
        try:
            self._write(message)
        except (OSError, ValueError) as error:
            raise self._failure(f"could not write to the server ({error})") from error

    def _write(self, message: dict[str, Any]) -> None:
        """One framed message to the server's stdin (both threads write: the lock)."""
        process = self._process
        if process is None or process.stdin is None:
            raise LanguageServerError("the server is not running")
        body = json.dumps(message).encode("utf-8")
        with self._write_lock:
            process.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
            process.stdin.flush()

    def _pump(self, deadline: float, waiting_for: str) -> None:
        """Take one message off the queue (the reader thread fills it) and file it."""
        if self._ended:
            raise self._failure(f"the server had ended; waiting for {waiting_for}")
        try:
            message = self._messages.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise self._failure(f"timed out waiting for {waiting_for}") from None
        if message is None:
            self._ended = True
            raise self._failure(f"the server ended while waiting for {waiting_for}")
        method = message.get("method")
        if method is None:
            self._responses[message["id"]] = message
        elif method == "textDocument/publishDiagnostics":
            params = message["params"]
            self._published.setdefault(params["uri"], deque()).append(params["diagnostics"])
        elif method in ("window/logMessage", "window/showMessage"):
            self.log.append(str(message["params"].get("message")))

    def _failure(self, what: str) -> LanguageServerError:
        process = self._process
        code = None if process is None else process.poll()
        status = "" if code is None else f" (it exited with {code})"
        stderr = "\n".join(self._stderr) or "(nothing)"
        logged = "\n".join(self.log[-20:]) or "(nothing)"
        return LanguageServerError(
            f"yaml-language-server: {what}{status}\nstderr:\n{stderr}\nlogged:\n{logged}"
        )

    # --- the reader threads -------------------------------------------------------------------
    def _read(self, stream: IO[bytes]) -> None:
        """Frames from the server's stdout: its requests answered here, all else queued."""
        try:
            while True:
                length = None
                while True:
                    header = stream.readline()
                    if not header:
                        return
                    if header in (b"\r\n", b"\n"):
                        break
                    name, _, value = header.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    raise ValueError("a message without Content-Length")
                message = json.loads(stream.read(length))
                if "id" in message and "method" in message:
                    self._answer(message)
                else:
                    self._messages.put(message)
        except (OSError, ValueError) as error:
            self._stderr.append(f"[tests/lsp.py] reading the server's output: {error}")
        finally:
            self._messages.put(None)

    def _answer(self, request: dict[str, Any]) -> None:
        method = request["method"]
        answer: dict[str, Any] = {"jsonrpc": "2.0", "id": request["id"]}
        if method == "workspace/configuration":
            # Per item: our settings for "yaml"; the sections an editor has but we do not set
            # ("[yaml]", "editor", "http", "files") come back empty, as from a fresh VS Code.
            answer["result"] = [
                self.settings if item.get("section") == "yaml" else {}
                for item in request["params"]["items"]
            ]
        elif method in (
            "client/registerCapability",
            "client/unregisterCapability",
            "window/workDoneProgress/create",
            "window/showMessageRequest",
            "workspace/codeLens/refresh",
        ):
            answer["result"] = None
        else:
            answer["error"] = {"code": -32601, "message": f"tests/lsp.py has no {method}"}
        with contextlib.suppress(OSError, ValueError, LanguageServerError):
            self._write(answer)  # if not, the server is ending: the main thread reports it

    def _drain(self, stream: IO[bytes]) -> None:
        """Keep the server's stderr (its last lines), so a full pipe never blocks it."""
        for line in iter(stream.readline, b""):
            self._stderr.append(line.decode("utf-8", "replace").rstrip())


def _line(lines: list[str], index: int) -> str:
    return lines[index] if 0 <= index < len(lines) else ""


def _completion(item: dict[str, Any]) -> CompletionItem:
    edit = item.get("textEdit") or {}
    kind = item.get("kind")
    return CompletionItem(
        label=str(item["label"]),
        kind=None if kind is None else COMPLETION_KINDS.get(kind, str(kind)),
        documentation=_plain(item.get("documentation")),
        insert_text=item.get("insertText", edit.get("newText")),
        snippet=item.get("insertTextFormat") == 2,
        detail=item.get("detail"),
        raw=item,
    )
