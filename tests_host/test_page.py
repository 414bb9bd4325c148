"""The page at / and the helper script: caching and compression, so a reload
storm costs the device little (a 304 with no body, or a gzipped body)."""

from __future__ import annotations

import gzip

from wsutil import http


def request(t, path: str, extra: str = "") -> tuple[int, dict, bytes]:
    return http(t, f"GET {path} HTTP/1.1\r\nHost: {t.host}:{t.port}\r\n{extra}\r\n".encode())


def test_the_page_is_revalidated_and_a_reload_gets_304(quiet):
    status, headers, body = request(quiet, "/")
    assert status == 200 and body.startswith(b"<!doctype html>")
    assert headers["cache-control"] == "no-cache"
    tag = headers["etag"]
    status, headers, body = request(quiet, "/", f"If-None-Match: {tag}\r\n")
    assert status == 304 and body == b"" and headers["etag"] == tag
    status, _, body = request(quiet, "/", 'If-None-Match: "other"\r\n')
    assert status == 200 and body.startswith(b"<!doctype html>")


def test_gzip_when_the_browser_takes_it(quiet):
    _, _, plain = request(quiet, "/stormproof.js")
    status, headers, body = request(quiet, "/stormproof.js", "Accept-Encoding: gzip, deflate\r\n")
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert headers["cache-control"] == "max-age=3600" and headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(body) == plain and len(body) < len(plain)
