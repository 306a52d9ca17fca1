"""Reading rendered configs the way the programs will: supervisor's own config parser,
gunicorn's own argument parser, and nginx blocks and statements."""

from __future__ import annotations

import re
from pathlib import Path

from gunicorn.config import Config as GunicornConfig
from supervisor.options import ServerOptions


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
