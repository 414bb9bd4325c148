"""Opening handshake and plain HTTP: exact statuses from the real server."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest
from conftest import mp_driver
from wsutil import RawWS, accept_for, get, http, new_key, parse_response, recv_until_closed

SHA1_DRIVER = Path(__file__).parent / "mp" / "sha1_driver.py"


def upgrade(target, headers: dict[str, str | None], method="GET", path=None, version="HTTP/1.1"):
    base = {
        "Host": f"{target.host}:{target.port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": new_key(),
        "Sec-WebSocket-Version": "13",
    }
    base.update(headers)
    lines = [f"{method} {path or target.ws_path} {version}"]
    lines += [f"{k}: {v}" for k, v in base.items() if v is not None]
    return http(target, ("\r\n".join(lines) + "\r\n\r\n").encode())


def test_valid_upgrade(quiet):
    key = new_key()
    status, headers, _ = upgrade(quiet, {"Sec-WebSocket-Key": key})
    assert status == 101
    assert headers["sec-websocket-accept"] == accept_for(key)
    assert headers["upgrade"].lower() == "websocket"
    assert "upgrade" in headers["connection"].lower()


def test_rfc_sample_key(quiet):
    status, headers, _ = upgrade(quiet, {"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert status == 101
    assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_sha1_kernel_matches_hashlib_across_padding_boundaries():
    # The accept key's SHA-1 runs in a viper kernel with fixed buffers; every
    # length up to three blocks covers each place the padding can fall (55,
    # 56, 63, 64 bytes...), and the hashlib fallback gives the same keys.
    rng = random.Random(6455)
    messages = [rng.randbytes(n) for n in range(0, 200)]
    keys = ["dGhlIHNhbXBsZSBub25jZQ=="] + [new_key() for _ in range(50)]
    with mp_driver(SHA1_DRIVER) as ask:
        reply = ask({"messages": [m.hex() for m in messages], "keys": keys})
    assert reply["digests"] == [hashlib.sha1(m).hexdigest() for m in messages]
    expected = [accept_for(k) for k in keys]
    assert reply["accept"] == {"kernel": expected, "hashlib": expected}
    assert expected[0] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert reply["kernel_ok"] is True


def test_header_tokens_are_case_insensitive_lists(quiet):
    status, _, _ = upgrade(quiet, {"Upgrade": "WebSocket", "Connection": "keep-alive, UPGRADE"})
    assert status == 101


@pytest.mark.parametrize("version", ["8", "12", "14", "", "13, 8"])
def test_wrong_version_is_426_naming_13(quiet, version):
    status, headers, _ = upgrade(quiet, {"Sec-WebSocket-Version": version})
    assert status == 426
    assert headers["sec-websocket-version"] == "13"


def test_missing_version_is_426(quiet):
    status, headers, _ = upgrade(quiet, {"Sec-WebSocket-Version": None})
    assert status == 426
    assert headers["sec-websocket-version"] == "13"


@pytest.mark.parametrize(
    "key",
    [None, "", "short", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ==x", "!!!!!!!!!!!!!!!!!!!!!!==",
     "dGhlIHNhbXBsZSBub25jZSE="],
)  # fmt: skip
def test_bad_key_is_400(quiet, key):
    status, _, _ = upgrade(quiet, {"Sec-WebSocket-Key": key})
    assert status == 400


def test_duplicate_key_is_400(quiet):
    raw = (
        f"GET {quiet.ws_path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {new_key()}\r\nSec-WebSocket-Key: {new_key()}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()
    assert http(quiet, raw)[0] == 400


def test_missing_host_is_400(quiet):
    assert upgrade(quiet, {"Host": None})[0] == 400


def test_connection_without_upgrade_is_400(quiet):
    assert upgrade(quiet, {"Connection": "keep-alive"})[0] == 400


def test_upgrade_with_post_is_405(quiet):
    status, headers, _ = upgrade(quiet, {}, method="POST")
    assert status == 405
    assert "GET" in headers["allow"]


def test_upgrade_over_http10_is_400(quiet):
    assert upgrade(quiet, {}, version="HTTP/1.0")[0] == 400


def test_upgrade_on_unknown_path_is_404(quiet):
    assert upgrade(quiet, {}, path="/nope")[0] == 404


def test_plain_get_on_websocket_path_is_426(quiet):
    status, headers, _ = get(quiet, quiet.ws_path)
    assert status == 426
    assert headers["upgrade"].lower() == "websocket"


def test_page_and_stats_and_404(quiet):
    status, headers, body = get(quiet, "/")
    assert status == 200
    assert headers["content-type"].startswith("text/html")
    assert b"WebSocket" in body
    # Streamed in pieces, ended by the close (Connection: close): all of it arrived.
    assert headers["connection"] == "close"
    assert body.rstrip().endswith(b"</html>")
    assert get(quiet, "/stats")[0] == 200
    assert get(quiet, "/missing")[0] == 404


def test_post_to_page_is_405(quiet):
    raw = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
    status, headers, _ = http(quiet, raw)
    assert status == 405
    assert "GET" in headers["allow"]


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"GET  / HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\n bad: fold\r\n\r\n",
     b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", b"GET / HTTP/1.1\r\nName : value\r\n\r\n"],
)  # fmt: skip
def test_malformed_requests_are_400(quiet, raw):
    assert http(quiet, raw)[0] == 400


def test_unsupported_http_version_is_505(quiet):
    assert http(quiet, b"GET / HTTP/2.0\r\nHost: x\r\n\r\n")[0] == 505


def status_of_oversized(target, raw: bytes) -> int:
    """The status answering a request too big to be read whole."""
    from wsutil import connect

    with connect(target) as s:
        try:
            s.sendall(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading it all
        return parse_response(recv_until_closed(s))[0]


def test_oversized_head_is_431(quiet):
    raw = b"GET / HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * 20000 + b"\r\n\r\n"
    assert status_of_oversized(quiet, raw) == 431


def test_too_many_headers_is_431(quiet):
    raw = (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(60)) + b"\r\n"
    )
    assert http(quiet, raw)[0] == 431


def test_request_split_byte_by_byte(quiet):
    from wsutil import upgrade_request

    key = new_key()
    with RawWS(quiet, handshake=False) as ws:
        for b in upgrade_request(quiet, key):
            ws.send(bytes([b]))
        head = ws._read_head()
        status, headers, _ = parse_response(head)
    assert status == 101
    assert headers["sec-websocket-accept"] == accept_for(key)


def test_frames_sent_with_the_request_are_kept(quiet):
    # A client may pipeline its first frame right behind the request.
    from wsutil import frame, upgrade_request

    with RawWS(quiet, handshake=False) as ws:
        ws.send(upgrade_request(quiet) + frame(1, b"early bird"))
        ws._read_head()
        assert ws.recv_message() == (1, b"early bird")


def test_plain_http_errors_are_not_counted_as_refused_clients(quiet):
    from wsutil import get_stats

    before = get_stats(quiet)
    assert get(quiet, "/favicon.ico")[0] == 404
    after = get_stats(quiet)
    assert after["http_errors"] == before["http_errors"] + 1
    assert after["refused_bad"] == before["refused_bad"]


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [("echo", "echo"), ("chat, echo", "echo"), ("chat,echo", "echo"), ("chat", None), (None, None)],
)
def test_subprotocol_selection(quiet, offered, chosen):
    extra = {"Sec-WebSocket-Protocol": offered} if offered else {}
    status, headers, _ = upgrade(quiet, extra)
    assert status == 101
    assert headers.get("sec-websocket-protocol") == chosen


def test_subprotocol_with_a_strict_client(quiet):
    import asyncio

    import websockets

    async def go():
        async with websockets.connect(quiet.ws_url, subprotocols=["echo"]) as ws:
            assert ws.subprotocol == "echo"
            await ws.send("hi")
            assert await ws.recv() == "hi"

    asyncio.run(go())


def test_absolute_form_target_is_understood(quiet):
    raw = (
        f"GET http://{quiet.host}:{quiet.port}/stats HTTP/1.1\r\nHost: {quiet.host}\r\n\r\n"
    ).encode()
    assert http(quiet, raw)[0] == 200
    assert http(quiet, b"GET stats HTTP/1.1\r\nHost: x\r\n\r\n")[0] == 400


def test_too_much_data_before_the_101_is_refused(quiet):
    from wsutil import frame, upgrade_request

    raw = upgrade_request(quiet) + frame(2, b"x" * 600)
    status, _, body = http(quiet, raw)
    assert status == 400
    assert b"before the handshake" in body


# ---- found by the hostile review (issue 11) ----------------------------------


def test_long_token_lists_are_scanned_in_place(quiet):
    """A ~1 KB Upgrade list, or 150 subprotocols offered, is just a request:
    the server answers it without splitting the header into strings."""
    from wsutil import get_stats

    before = get_stats(quiet)
    tokens = ",".join(f"q{i:03x}" for i in range(190))
    status, _, body = http(
        quiet, f"GET /stats HTTP/1.1\r\nHost: x\r\nUpgrade: {tokens}\r\n\r\n".encode()
    )
    assert status == 200 and body.startswith(b"{")
    offered = ",".join(f"p{i:02x}" for i in range(150)) + ",echo"
    status, headers, _ = upgrade(quiet, {"Sec-WebSocket-Protocol": offered})
    assert status == 101
    assert headers["sec-websocket-protocol"] == "echo"
    assert get_stats(quiet)["memory_errors"] == before["memory_errors"]


@pytest.mark.parametrize(
    "raw",
    [b"GET /\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"G\xc3\xa9T / HTTP/1.1\r\nHost: x\r\n\r\n",
     b"GET /stats?\xfe HTTP/1.1\r\nHost: x\r\n\r\n"],
)  # fmt: skip
def test_non_ascii_request_line_is_400_and_counted(quiet, raw):
    from wsutil import get_stats

    before = get_stats(quiet)
    assert http(quiet, raw)[0] == 400
    assert get_stats(quiet)["refused_bad"] == before["refused_bad"] + 1


@pytest.mark.parametrize(
    "header",
    [
        "Upgrade",
        "Connection",
        "Sec-WebSocket-Key",
        "Sec-WebSocket-Version",
        "Sec-WebSocket-Protocol",
    ],
)
def test_invalid_bytes_in_handshake_headers_are_400_and_counted(quiet, header):
    from wsutil import get_stats, upgrade_request

    raw = upgrade_request(quiet, extra="Sec-WebSocket-Protocol: echo\r\n")
    lines = raw.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(header.lower().encode() + b":"):
            lines[i] = line + b"\xff"
    before = get_stats(quiet)
    assert http(quiet, b"\r\n".join(lines))[0] == 400
    assert get_stats(quiet)["refused_bad"] == before["refused_bad"] + 1


def test_head_ending_in_lf_crlf_is_complete(quiet):
    status, _, body = http(quiet, b"GET /stats HTTP/1.1\r\nHost: x\n\r\n")
    assert status == 200 and body.startswith(b"{")


def test_empty_line_before_the_request_line_is_ignored(quiet):
    status, _, body = http(quiet, b"\r\nGET /stats HTTP/1.1\r\nHost: x\r\n\r\n")
    assert status == 200 and body.startswith(b"{")


def test_overlong_target_is_414(quiet):
    raw = b"GET /" + b"a" * 1100 + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert status_of_oversized(quiet, raw) == 414


def test_request_max_holds_whichever_buffer_reads_the_request(quiet):
    """With the handshake pool busy a request is read in a free slot's bigger
    buffer; the limit is still request_max."""
    from wsutil import connect, get_stats

    limit = 1024  # request_max, the default
    stallers = [connect(quiet) for _ in range(get_stats(quiet)["handshakes_total"])]
    try:
        for s in stallers:
            s.sendall(b"GET / HTTP/1.1\r\n")
        raw = b"GET /stats HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * (limit + 500) + b"\r\n\r\n"
        assert status_of_oversized(quiet, raw) == 431
    finally:
        for s in stallers:
            s.close()


@pytest.mark.parametrize("path", ["/stats", "/"])
def test_plain_page_asked_with_upgrade_headers_is_served(quiet, path):
    from wsutil import upgrade_request

    status, _, body = http(quiet, upgrade_request(quiet, path=path))
    assert status == 200
    assert body


def test_handshake_timeout_answers_408_to_a_partial_request(robust):
    """A request that started but never finished gets 408; a connection that
    never sent a byte (a browser's preconnect) is closed without a word."""
    from wsutil import connect, get_stats

    t = robust
    before = get_stats(t)["refused_timeout"]
    partial = connect(t)
    silent = connect(t)
    partial.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
    assert parse_response(recv_until_closed(partial))[0] == 408
    assert recv_until_closed(silent) == b""
    partial.close()
    silent.close()
    assert get_stats(t)["refused_timeout"] - before == 2
