"""Reading rendered configs the way the programs will: supervisor's own config parser,
gunicorn's own argument parser, and nginx blocks and statements."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gunicorn.config import Config as GunicornConfig
from supervisor.options import ServerOptions

from tests.fallback import in_bounds


def supervisor_options(conf: Path) -> ServerOptions:
    """``conf`` as supervisord reads it (its includes, %-expansion and validation)."""
    options = ServerOptions()
    options.configfile = str(conf)
    options.process_config(do_usage=False)
    return options


def gunicorn_settings(argv: list[str]) -> GunicornConfig:
    """Parse a gunicorn command line the way gunicorn's Application.load_config does."""
    settings = GunicornConfig()
    args = settings.parser().parse_args(argv[1:])
    for key, value in vars(args).items():
        if value is not None and key != "args":
            settings.set(key.lower(), value)
    return settings


def with_includes(text: str) -> str:
    """An nginx config with every ``include FILE;`` line replaced by the file's text, as nginx
    reads it (the rendered configs include by absolute path)."""
    return re.sub(r"^\s*include (\S+);$", lambda m: Path(m.group(1)).read_text(), text,
                  flags=re.MULTILINE)


def nginx_block(text: str, opening: str) -> str:
    """The text between ``opening {`` and its matching ``}``."""
    start = text.index(opening + " {") + len(opening) + 2
    depth = 1
    for index in range(start, len(text)):
        depth += {"{": 1, "}": -1}.get(text[index], 0)
        if depth == 0:
            return text[start:index]
    raise AssertionError(f"unbalanced block {opening!r}")


def directives(block: str) -> list[str]:
    """Top-level directives of an nginx block, whitespace-normalised, comments dropped."""
    block = re.sub(r"#[^\n]*", "", block)
    found, depth, current = [], 0, ""
    for char in block:
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            current = ""
        elif char == ";" and depth == 0:
            found.append(" ".join(current.split()))
            current = ""
        elif depth == 0:
            current += char
    return found


def blocks(text: str, opening: str) -> list[str]:
    """Every ``opening { … }`` block of ``text``, in order."""
    found, start = [], 0
    while (at := text.find(opening + " {", start)) != -1:
        found.append(nginx_block(text[at:], opening))
        start = at + 1
    return found


def statements(block: str) -> list[str]:
    """Top-level directives of an nginx block, whitespace-normalised, comments dropped; unlike
    ``directives``, a ';', '{', '}' or '#' inside quotes (a JSON body, a regex) stays put."""
    found, depth, current, quote, escaped, comment = [], 0, "", "", False, False
    for char in block:
        if comment:
            comment = char != "\n"
            continue
        if quote:
            if depth == 0:
                current += char
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char == "#":
            comment = True
            continue
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                current = ""
            continue
        elif char == ";" and depth == 0:
            found.append(" ".join(current.split()))
            current = ""
            continue
        if depth == 0:
            current += char
    return found


def locations(server: str) -> dict[str, list[str]]:
    """``location`` name (``@x``, ``= /path``, ``/prefix``, ``~ regex``) -> its directives."""
    found = {}
    for match in re.finditer(r"^\s*location ([^{\n]+?) \{", server, re.MULTILINE):
        name = match.group(1)
        found[name] = statements(nginx_block(server[match.start():].lstrip(), f"location {name}"))
    return found


def json_return(directive: str) -> tuple[int, dict]:
    """``return CODE '{json}\\n'`` -> (CODE, the parsed body)."""
    match = re.fullmatch(r"return (\d+) '(.*)'", directive)
    assert match, directive
    return int(match.group(1)), json.loads(match.group(2).replace("\\n", "\n"))


#: nginx's own answers (eventgate-errors.conf): location -> (status, error code).
NGINX_ERRORS = {"@bad_request": (400, "bad_request"), "@not_found": (404, "not_found"),
                "= /.eventgate/uri-too-long": (414, "uri_too_long"),
                "@too_large": (413, "content_too_large"),
                "@too_many_requests": (429, "too_many_requests"),
                "@unavailable": (503, "unavailable")}
#: Metrics are never public: one location, with no error_page of its own (the server's 404,
#: 413 and 429 hold there).
METRICS_LOCATION = "~ ^/(metrics(/|$)|streams/metrics$)"


def assert_nginx_errors_json(server: str) -> None:
    """``server`` (includes inlined) maps nginx's own refusals, for every location that sets no
    error_page of its own, to locations that answer JSON with a human sentence."""
    own = statements(server)
    for wanted in ("error_page 400 494 = @bad_request", "error_page 404 = @not_found",
                   "error_page 414 /.eventgate/uri-too-long",
                   "error_page 413 = @too_large", "error_page 429 = @too_many_requests"):
        assert wanted in own, wanted
    found = locations(server)
    for name, (status, error) in NGINX_ERRORS.items():
        body = found[name]
        assert "default_type application/json" in body, name
        code, answer = json_return(body[-1])
        assert (code, answer["error"]) == (status, error) and answer["message"], name
    assert "internal" in found["= /.eventgate/uri-too-long"]


def assert_error_pages_json(found: dict[str, list[str]], fallbacks: dict[str, str]) -> None:
    """A location that sets any error_page inherits none of the server's: each of ``found``
    (``locations``, includes inlined) that sets one must map nginx's own refusals to JSON itself,
    and its 5xx to its fallback in ``fallbacks`` (location name -> fallback location)."""
    for name, body in found.items():
        if not any(d.startswith("error_page") for d in body):
            continue
        assert name in fallbacks, f"{name} sets error_page: add it to this test"
        for wanted in ("error_page 400 = @bad_request", "error_page 413 = @too_large",
                       "error_page 429 = @too_many_requests",
                       f"error_page 502 503 504 = {fallbacks[name]}"):
            assert wanted in body, (name, wanted)


def assert_fallback_map(nginx: str) -> None:
    """The retry fallback's ``map $request_id $eventgate_stream_retry``, read as nginx applies
    it (regexes in order, the first match wins) to a request id ending in each hex digit (nginx's
    $request_id: 32 lowercase ones): 16 different delays, each within 0.5–1.5 x the base."""
    entries = [statement.rsplit(" ", 1)
               for statement in statements(nginx_block(nginx, "map $request_id "
                                                              "$eventgate_stream_retry"))]
    default = next(int(value) for key, value in entries if key == "default")
    patterns = [(re.compile(key.strip('"')[1:]), int(value))
                for key, value in entries if key.startswith('"~')]
    delays = [next((value for pattern, value in patterns if pattern.search("0" * 31 + digit)),
                   default)
              for digit in "0123456789abcdef"]
    assert all(in_bounds(delay) for delay in [default, *delays]), (default, delays)
    assert len(set(delays)) == 16, delays


def longest_stream_head() -> bytes:
    """The longest head the stream pool answers a stream with: its fixed head, CORS headers for
    an origin with a 253-character host (DNS's longest) and a port, then the retry line and a
    cursor position that share its first write."""
    from types import SimpleNamespace

    from eventgate.shared import sse
    from eventgate.stream import opening

    origin = "https://" + ".".join(["a" * 63] * 3 + ["b" * 61]) + ":65535"
    cors = opening.StreamOpener.cors_headers(SimpleNamespace(cors_origins=(origin,)), origin)
    return opening._HEAD + opening._header_lines(cors) + b"\r\n" + sse.retry(99999)
