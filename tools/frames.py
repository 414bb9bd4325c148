"""Which functions of the device code allocate their frame on the heap.

MicroPython runs a bytecode function with its locals and value stack on the
C stack only while they fit in 11 machine words (VM_MAX_STATE_ON_STACK in
py/objfun.c, counting 3 words per active try block); past that, every call
allocates the frame on the GC heap (136 B and up on the 64-bit unix port)
and leaves it as garbage. Coroutines and generators always live on the heap,
once per call. Neither shows in the source, so this tool reads the compiled
code: it compiles each file with mpy-cross, decodes every function's
prelude (.mpy format 6) and prints its frame size and where it goes.

    python tools/frames.py lib/stormproof/*.py      # report
    python tools/frames.py --hot FILE ...           # also check HOT below

Viper and native functions run on the C stack and are skipped (their
decorators are dropped so the rest of the file compiles to bytecode).
"""

import argparse
import keyword
import re
import subprocess
import sys
import tempfile
from pathlib import Path

STACK_WORDS = 11  # VM_MAX_STATE_ON_STACK / sizeof(mp_uint_t)
EXC_WORDS = 3  # an mp_exc_stack_t: handler, value stack pointer, saved exception

# Functions that run per message, per socket read or write, or per
# connection: each must keep its frame off the heap. (module, qualified name)
HOT = (
    # every byte received: the frame parser
    ("codec", "FrameParser.feed"),
    ("codec", "FrameParser._header"),
    ("codec", "FrameParser._payload"),
    ("codec", "FrameParser._unmask"),
    ("codec", "FrameParser._first_two"),
    ("codec", "FrameParser._header_done"),
    ("codec", "FrameParser._take_key"),
    ("codec", "FrameParser._frame_done"),
    ("codec", "FrameParser._close_frame"),
    ("codec", "write_header"),
    # every sweep (4 a second, idle or not)
    ("sweep", "once"),
    ("sweep", "_apply"),
    ("server", "Server.close_refused"),
    ("sweep", "ping"),
    ("sweep", "slot_due"),
    ("sweep", "request_expired"),
    # every refusal: probing silent slots
    ("sweep", "probe_silent"),
    # every /stats report
    ("stats", "Stats.render"),
    ("stats", "Stats._heap"),
    ("stats", "_mem_free"),
    ("stats", "_table"),
    ("stats", "_pair"),
    ("stats", "_put"),
    ("stats", "_kv"),
    ("stats", "_int"),
)

_NATIVE = re.compile(r"^\s*@micropython\.(viper|native)\b.*$", re.M)


class Reader:
    def __init__(self, data):
        self.d = data
        self.pos = 0

    def byte(self):
        b = self.d[self.pos]
        self.pos += 1
        return b

    def uint(self):
        v = 0
        while True:
            b = self.byte()
            v = (v << 7) | (b & 0x7F)
            if not b & 0x80:
                return v


def _skip_obj(r):
    kind = r.byte()
    if kind <= 4:  # function table, None, False, True, Ellipsis
        return
    n = r.uint()
    if kind == 10:  # tuple
        for _ in range(n):
            _skip_obj(r)
        return
    r.pos += n + (1 if kind in (5, 6) else 0)  # str and bytes end in NUL


def _signature(d, i):
    """(n_state, n_exc_stack, generator) from a bytecode prelude at d[i]."""
    z = d[i]
    i += 1
    state = (z >> 3) & 0xF
    exc = (z >> 2) & 1
    flags = 0
    n = 0
    while z & 0x80:
        z = d[i]
        i += 1
        state |= (z & 0x30) << (2 * n)
        exc |= (z & 0x02) << n
        flags |= ((z & 0x40) >> 6) << n
        n += 1
    return state + 1, exc, bool(flags & 1), i


def functions(mpy):
    """Yield (qualified name, n_state, n_exc_stack, generator) for every
    bytecode function in an .mpy file's bytes."""
    if mpy[0] != ord("M") or mpy[1] != 6:
        raise ValueError("not an .mpy of format 6")
    r = Reader(mpy)
    r.pos = 4
    n_qstr = r.uint()
    n_obj = r.uint()
    qstrs = []
    for _ in range(n_qstr):
        ln = r.uint()
        if ln & 1:
            qstrs.append(f"<static {ln >> 1}>")  # a name the firmware holds
            continue
        ln >>= 1
        qstrs.append(r.d[r.pos : r.pos + ln].decode())
        r.pos += ln + 1
    for _ in range(n_obj):
        _skip_obj(r)
    yield from _raw_code(r, qstrs, "")


def _raw_code(r, qstrs, outer):
    kind_len = r.uint()
    if kind_len & 3:
        raise ValueError("native code in the file: compile it without -march")
    start = r.pos
    r.pos += kind_len >> 3
    state, exc, gen, i = _signature(r.d, start)
    while r.d[i] & 0x80:  # prelude size (n_info, n_cell), variable length
        i += 1
    i += 1
    save = r.pos
    r.pos = i
    name = qstrs[r.uint()]
    r.pos = save
    qual = name if not outer or outer == "<module>" else outer + "." + name
    if outer:
        yield qual, state, exc, gen
    if kind_len & 4:
        for _ in range(r.uint()):
            yield from _raw_code(r, qstrs, qual if outer else "<module>")


def on_heap(state, exc):
    return state + EXC_WORDS * exc > STACK_WORDS


def compile_bytecode(src, name, mpy_cross):
    with tempfile.TemporaryDirectory() as tmp:
        py = Path(tmp) / name
        py.write_text(src)
        out = py.with_suffix(".mpy")
        subprocess.run([mpy_cross, "-O3", "-o", str(out), str(py)], check=True)
        return out.read_bytes()


def static_names(src, mpy_cross):
    """Names the firmware's own qstr table holds (__init__, close, ...) are
    stored in an .mpy by index; learn the indices by compiling a probe that
    defines a function for every identifier in src."""
    words = [
        w for w in sorted(set(re.findall(r"\b[A-Za-z_]\w*\b", src))) if not keyword.iskeyword(w)
    ]
    probe = "".join(f"def {w}():\n    pass\n" for w in words)
    names = {}
    for (qual, _, _, _), w in zip(
        functions(compile_bytecode(probe, "probe.py", mpy_cross)), words, strict=True
    ):
        if qual.startswith("<static"):
            names[qual] = w
    return names


def main(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("files", nargs="+")
    ap.add_argument("--mpy-cross", default="mpy-cross")
    ap.add_argument("--hot", action="store_true", help="fail if a function in HOT has a heap frame")
    ap.add_argument("--all", action="store_true", help="list every function, not only heap frames")
    ap.add_argument("--quiet", action="store_true", help="print only what fails --hot")
    a = ap.parse_args(argv)
    found = {}
    for f in a.files:
        mod = Path(f).stem
        text = Path(f).read_text()
        native = set(re.findall(r"@micropython\.(?:viper|native)[^\n]*\n\s*def (\w+)", text))
        names = static_names(text, a.mpy_cross)
        for qual, state, exc, gen in functions(
            compile_bytecode(_NATIVE.sub("", text), Path(f).name, a.mpy_cross)
        ):
            qual = ".".join(names.get(part, part) for part in qual.split("."))
            if qual.split(".")[-1] in native:
                found[(mod, qual)] = (0, 0, False)  # machine code: its frame is on the C stack
                continue
            found[(mod, qual)] = (state, exc, gen)
            words = state + EXC_WORDS * exc
            where = "coroutine" if gen else ("HEAP" if on_heap(state, exc) else "stack")
            if not a.quiet and (a.all or where != "stack"):
                print(f"{mod:12} {qual:34} {words:2d} words  {where}")
    if not a.hot:
        return 0
    bad = []
    for key in HOT:
        if key not in found:
            bad.append(f"{key[0]}.{key[1]}: not found (renamed? update HOT)")
            continue
        state, exc, gen = found[key]
        if gen or on_heap(state, exc):
            bad.append(f"{key[0]}.{key[1]}: {state + EXC_WORDS * exc} words, frame on the heap")
    for b in bad:
        print("hot path:", b, file=sys.stderr)
    if not bad:
        print(f"tools/frames.py: {len(HOT)} hot-path functions keep their frames off the heap")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
