"""What the fuzz tests share: their budget, input generators, and the corpus.

Budget: FUZZ_EXAMPLES Hypothesis examples per property (default 100, `make
fuzz` raises it); each example is a batch of cases sent to MicroPython in
one request, so the driver's round trip is paid once per batch.

Corpus: tests_host/fuzz_corpus/<kind>/*.json, replayed by every run without
Hypothesis's database. When a property fails, the shrunk case is written
there (the last failing case Hypothesis reports is the minimal one), with
what the device answered and what it should have; commit it with the fix,
and say in its "why" what it caught. The seeds came from mutation testing:
each one failed against a deliberately broken copy of the parser.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

CORPUS = Path(__file__).parent / "fuzz_corpus"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,  # a batch's time is MicroPython's, not a property
    database=None,  # the corpus, not a local database, keeps failures
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)


def batch(case):
    return st.lists(case, min_size=2, max_size=12)


# ---- splitting and mutating ------------------------------------------------


@st.composite
def split(draw, data: bytes) -> list[bytes]:
    """data cut at arbitrary points, sometimes one byte at a time."""
    if len(data) > 1 and draw(st.integers(0, 9)) == 0:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = draw(st.lists(st.integers(0, len(data)), max_size=6))
    points = [0, *sorted(cuts), len(data)]
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@st.composite
def mutate(draw, data: bytes, max_ops: int = 3) -> bytes:
    """A few byte-level edits of data: flip, set, insert, delete, truncate."""
    b = bytearray(data)
    for _ in range(draw(st.integers(0, max_ops))):
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "insert" or not b:
            i = draw(st.integers(0, len(b)))
            b[i:i] = draw(st.binary(min_size=1, max_size=4))
            continue
        i = draw(st.integers(0, len(b) - 1))
        if kind == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            b[i] = draw(
                st.sampled_from(
                    [0, 0x7F, 0x80, 0xFF, 13, 10, 32, 58, 44, draw(st.integers(0, 255))]
                )
            )
        elif kind == "delete":
            del b[i : i + draw(st.integers(1, 4))]
        else:
            del b[i:]
    return bytes(b)


# ---- client frames ---------------------------------------------------------

TEXTS = st.one_of(
    st.text(max_size=40).map(lambda s: s.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [
            "€".encode(),
            "𝄞".encode(),
            "κόσμε".encode(),
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"\xf0\x9d",
        ]
    ),  # fmt: skip
    st.binary(max_size=40),
)


CLOSE_CODES = st.one_of(
    st.sampled_from([0, 999, *range(1000, 1017), 2999, 3000, 3999, 4000, 4999, 5000, 65535]),
    st.integers(0, 65535),
)


@st.composite
def client_frame(draw, op: int, fin: bool) -> bytes:
    """A client frame of opcode op; one in five gets a field bent out of the rules."""
    if op == 8 and draw(st.booleans()):
        code = draw(CLOSE_CODES)
        payload = struct.pack("!H", code) + draw(TEXTS)[:20]
    elif op >= 8:
        payload = (
            draw(TEXTS)[:20]
            if draw(st.integers(0, 5))
            else draw(st.binary(min_size=124, max_size=127))
        )
    else:
        payload = draw(st.one_of(TEXTS, TEXTS, st.binary(min_size=100, max_size=300)))
    rsv, masked, form = 0, True, "min"
    if draw(st.integers(0, 4)) == 0:
        bend = draw(st.sampled_from(["op", "fin", "rsv", "mask", "16", "64", "lie", "huge"]))
        op = draw(st.integers(0, 15)) if bend == "op" else op
        fin = not fin if bend == "fin" else fin
        rsv = draw(st.integers(1, 7)) if bend == "rsv" else 0
        masked = bend != "mask"
        form = bend
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    mbit = 0x80 if masked else 0
    n = len(payload)
    if form == "huge":
        big = draw(st.sampled_from([1 << 24, 1 << 40, 1 << 63, (1 << 64) - 1, 65536, 70000]))
        head += bytes([mbit | 127]) + struct.pack("!Q", big)
    elif form == "lie":
        head += bytes([mbit | draw(st.integers(0, 125))])
    elif form == "64":
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    elif form == "16" or n > 125:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | n])
    if not masked:
        return head + payload
    key = draw(
        st.sampled_from([b"\0\0\0\0", b"\xff\xff\xff\xff"]) | st.binary(min_size=4, max_size=4)
    )
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@st.composite
def message_frames(draw) -> list[bytes]:
    """One message in 1-3 fragments with control frames between them, or one control frame."""
    if draw(st.integers(0, 3)) == 0:
        return [draw(client_frame(draw(st.sampled_from([8, 9, 10])), True))]
    parts = draw(st.integers(1, 3))
    out = []
    for i in range(parts):
        out.append(
            draw(client_frame(draw(st.sampled_from([1, 2])) if i == 0 else 0, i == parts - 1))
        )
        if i < parts - 1 and draw(st.booleans()):
            out.append(draw(client_frame(draw(st.sampled_from([9, 10])), True)))
    return out


@st.composite
def frame_stream(draw) -> bytes:
    """Raw bytes, frame sequences, or mutations of frame sequences."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=120))
    data = b"".join(b"".join(m) for m in draw(st.lists(message_frames(), min_size=1, max_size=4)))
    if draw(st.booleans()):  # the peer's close, for drain mode to find
        code = draw(CLOSE_CODES).to_bytes(2, "big")
        data += bytes([0x88, 0x82, 1, 2, 3, 4, code[0] ^ 1, code[1] ^ 2])
    if kind <= 2:
        data = draw(mutate(data))
    return data


# ---- HTTP requests ---------------------------------------------------------

HEADER_NAMES = ["Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
                "Sec-WebSocket-Protocol", "Origin", "X-Other"]  # fmt: skip


def good_request(path: str = "/ws", key: str = "dGhlIHNhbXBsZSBub25jZQ==") -> list[list[str]]:
    """A valid upgrade as [request line, [name, value], ...]."""
    return [
        ["GET", path, "HTTP/1.1"],
        ["Host", "127.0.0.1:8080"],
        ["Upgrade", "websocket"],
        ["Connection", "Upgrade"],
        ["Sec-WebSocket-Key", key],
        ["Sec-WebSocket-Version", "13"],
    ]


VALUES = st.one_of(
    st.sampled_from(["websocket", "WebSocket", "upgrade", "keep-alive, Upgrade", "13", "8", "13, 13",
                     "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZSBub25jZQ=", "AAAAAAAAAAAAAAAAAAAAAA==",
                     "echo", "chat, echo", " echo ,x", ",", "", "a\x7fb", "caf\xe9", "\t13\t"]),
    st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode()),
    st.text(st.characters(max_codepoint=0x7F), max_size=12),
    st.text(max_size=6),
    st.tuples(st.sampled_from(["", " ", "\t", " \t"]), st.sampled_from(["a", "13", "echo", "websocket"]),
              st.sampled_from(["", " ", "\t", "\t "])).map("".join),
)  # fmt: skip


@st.composite
def request_head(draw) -> bytes:
    """An upgrade or page request with its fields shuffled, swapped and bent."""
    path = draw(st.sampled_from(["/ws", "/chat", "/", "/stats", "/nope", "/ws?x=1", "*",
                                 "http://h/ws", "http://h", "ws", "/ws#f", "//ws"]))  # fmt: skip
    key = draw(st.binary(min_size=16, max_size=16).map(lambda b: base64.b64encode(b).decode()))
    lines = good_request(path, key)
    lines[0][0] = draw(st.sampled_from(["GET"] * 6 + ["HEAD", "POST", "get", "G\x00T", ""]))
    lines[0][2] = draw(
        st.sampled_from(["HTTP/1.1"] * 6 + ["HTTP/1.0", "HTTP/1.", "HTTP/2", "http/1.1", ""])
    )
    if draw(st.integers(0, 9)) == 0:  # around the 40-field limit
        lines += [["X-Pad", "1"]] * draw(st.integers(30, 40))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.integers(0, 3))
        i = draw(st.integers(1, len(lines)))
        if op == 0 and len(lines) > 1:
            del lines[min(i, len(lines) - 1)]
        elif op == 1:
            lines.insert(i, [draw(st.sampled_from(HEADER_NAMES)), draw(VALUES)])
        elif op == 2 and len(lines) > 1:
            lines[min(i, len(lines) - 1)][1] = draw(VALUES)
        else:
            j = min(i, len(lines) - 1)
            if j:
                lines[j][0] = draw(
                    st.sampled_from([lines[j][0].upper(), lines[j][0].lower(), lines[j][0] + " "])
                )
    eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n"]))
    text = " ".join(lines[0]) + eol + "".join(f"{k}: {v}{eol}" for k, v in lines[1:]) + eol
    data = draw(st.sampled_from([b"", b"\r\n"])) + text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 2)) == 0:
        data = draw(mutate(data, 4))
    return data


# ---- who may connect: Origin, Host, token -------------------------------------

SECRETS = ["s3cret-Token_1", "x.y~Z"]  # a token's characters: letters, digits, -._~
HOSTS = ["127.0.0.1:8080", "127.0.0.1", "App.Example:8000", "h:8443", "stormproof.local", "h", ""]


def _cases(draw, s: str) -> str:
    return draw(st.sampled_from([s, s, s.upper(), s.lower(), s.swapcase()]))


@st.composite
def _origin(draw, host: str) -> str:
    """The Host's own origin bent a little, another site's, or no origin at all."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.sampled_from(["null", "http://app.example:8000", "http://ÄÖ.example",
                                     "http://äö.example", "https://h:8443", "http://evil.example",
                                     "http://app.example:8000, http://app.example:8000", ""]))  # fmt: skip
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "ws", "", "a://b"]))
    sep = draw(st.sampled_from(["://"] * 5 + [":/", ":", "//"]))
    named = _cases(draw, draw(st.sampled_from([host, host, *HOSTS])))
    tail = draw(st.sampled_from([""] * 5 + ["/", ":8080", ".", " x"]))
    return scheme + sep + named + tail


@st.composite
def _query(draw, secret: str) -> str:
    near = [secret, secret, secret[:-1], secret + "x", secret.swapcase(), "", secret + "="]
    params = draw(st.lists(st.one_of(
        st.sampled_from(near).map(lambda t: "token=" + t),
        st.sampled_from(["x=1", "", "TOKEN=" + secret, "token", "token.=" + secret,
                         "token=" + secret + "#f", "token%3D" + secret, "y=token=" + secret]),
    ), max_size=3))  # fmt: skip
    return "?" + "&".join(params) if params or draw(st.booleans()) else ""


@st.composite
def access_head(draw) -> bytes:
    """An upgrade whose Origin, Host, token and subprotocols vary: case,
    duplicates, near misses, and the odd bytes a mutation adds."""
    secret = draw(st.sampled_from(SECRETS))
    target = draw(st.sampled_from(["/ws", "/ws", "http://h/ws", "/"])) + draw(_query(secret))
    if draw(st.integers(0, 9)) == 0:  # a "?" in an absolute form's authority
        target = "http://h?token=" + secret + "&/ws"
    lines = good_request(target)
    host = draw(st.sampled_from(HOSTS))
    lines[1][1] = host
    if draw(st.integers(0, 5)) == 0:
        lines.append(["Host", draw(st.sampled_from(HOSTS))])
    for _ in range(draw(st.sampled_from([0, 1, 1, 1, 2]))):
        lines.append([_cases(draw, "Origin"), draw(_origin(host))])
    for _ in range(draw(st.sampled_from([0, 1, 1, 2]))):
        offers = draw(st.lists(st.sampled_from(
            ["token." + secret, "token." + secret.swapcase(), "token." + secret[:-1], "token.",
             "Token." + secret, "token. " + secret, "chat", "echo", "", " echo\t"]), max_size=3))  # fmt: skip
        lines.append([_cases(draw, "Sec-WebSocket-Protocol"), ",".join(offers)])
    head, fields = lines[0], draw(st.permutations(lines[1:]))
    eol = draw(st.sampled_from(["\r\n"] * 6 + ["\n"]))
    text = " ".join(head) + eol + "".join(f"{k}: {v}{eol}" for k, v in fields) + eol
    data = text.encode()
    if draw(st.integers(0, 3)) == 0:
        data = draw(mutate(data, 3))
    return data


# ---- corpus ------------------------------------------------------------------


def corpus(kind: str) -> list[tuple[str, dict]]:
    d = CORPUS / kind
    return [(p.stem, json.loads(p.read_text())) for p in sorted(d.glob("*.json"))]


class Keeper:
    """Remembers the last failing case of a property; writes it to the corpus
    when the test ends in failure (Hypothesis replays the minimal one last)."""

    def __init__(self, kind: str):
        self.kind = kind
        self.last: dict | None = None

    def failed(self, case: dict) -> None:
        self.last = case

    def save(self) -> Path | None:
        if self.last is None:
            return None
        text = json.dumps({**self.last, "why": "(what it caught)"}, sort_keys=True) + "\n"
        path = CORPUS / self.kind / (hashlib.sha1(text.encode()).hexdigest()[:12] + ".json")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path


def fuzz_and_keep(kind: str, strategies: tuple, check) -> None:
    """Run the property `check(*examples) -> None or the failing case` on
    Hypothesis examples of `strategies`; the minimal failing case is kept in
    the corpus (`kind`) and replayed by every run from then on."""
    keeper = Keeper(kind)

    @FUZZ
    @given(st.tuples(*strategies))
    def prop(examples):
        bad = check(*examples)
        if bad:
            keeper.failed(bad)
        assert bad is None, bad

    try:
        prop()
    except BaseException:
        print("kept as", keeper.save())
        raise


def replay_patterns(chunks: list[str]) -> list[list[bytes]]:
    """A corpus case's input (hex chunks) as it failed, then whole, a byte
    at a time and at a few seeded cuts (chunks_of)."""
    data = b"".join(bytes.fromhex(c) for c in chunks)
    return [[bytes.fromhex(c) for c in chunks], *chunks_of(data, len(data))]


def chunks_of(data: bytes, seed: int) -> list[list[bytes]]:
    """Split patterns a corpus case is replayed with: whole, a byte at a
    time, and a few random cuts (seeded: the same on every run)."""
    rng = random.Random(seed)
    pats = [[data], [data[i : i + 1] for i in range(len(data))]]
    for _ in range(4):
        cuts = sorted(rng.randrange(len(data) + 1) for _ in range(rng.randrange(1, 5)))
        points = [0, *cuts, len(data)]
        pats.append([data[a:b] for a, b in zip(points, points[1:], strict=False)])
    return pats
