"""RFC 6455 frame codec: bytes in, events out. No sockets, no allocation per frame.

The parser is fed whatever the transport read, split at any byte boundary.
Data payloads are unmasked straight into one fixed message buffer
(fragments are reassembled there); control payloads go to a separate
125-byte buffer, so a ping between two fragments never disturbs the
message. Every rule a frame can break is checked in `_header_done` or
`_frame_done`, the moment enough bytes are known to decide it.
"""

import micropython
from micropython import const

from . import utf8
from .kernels import unmask_copy

# Opcodes (RFC 6455 section 5.2)
OP_CONT = const(0)
OP_TEXT = const(1)
OP_BINARY = const(2)
OP_CLOSE = const(8)
OP_PING = const(9)
OP_PONG = const(10)

# Close codes (section 7.4.1)
CLOSE_NORMAL = const(1000)
CLOSE_GOING_AWAY = const(1001)
CLOSE_PROTOCOL_ERROR = const(1002)
CLOSE_UNSUPPORTED = const(1003)
CLOSE_NO_STATUS = const(1005)
CLOSE_ABNORMAL = const(1006)
CLOSE_INVALID_DATA = const(1007)
CLOSE_POLICY = const(1008)
CLOSE_TOO_BIG = const(1009)
CLOSE_INTERNAL_ERROR = const(1011)
CLOSE_TRY_AGAIN = const(1013)

# Events returned by FrameParser.feed()
EV_NONE = const(0)  # every byte given was consumed; feed more
EV_TEXT = const(1)  # a whole text message is in message[:msg_len]
EV_BINARY = const(2)  # a whole binary message is in message[:msg_len]
EV_PING = const(3)  # control[:ctl_len] holds the ping payload
EV_PONG = const(4)
EV_CLOSE = const(5)  # close_code (1005 if absent), reason in control[2:ctl_len]
EV_ERROR = const(6)  # fail the connection with error_code / error_reason
_MORE = const(-1)  # internal: a step finished, parsing goes on

_CONTROL_MAX = const(125)
_HEADER_MAX = const(14)


@micropython.native
def close_code_valid(code):
    """May a peer send this code in a close frame? (sections 7.4.1 and 7.4.2)"""
    if code < 1000 or code >= 5000:
        return False
    if code >= 3000:
        return True  # registered (3000-3999) and private (4000-4999)
    # 1004-1006 and 1015 are reserved and must never appear on the wire;
    # 1016-2999 are unassigned.
    return code <= 1003 or 1007 <= code <= 1014


class FrameParser:
    """Incremental parser for client-to-server frames.

    `message` is the caller's fixed buffer; a message longer than
    `max_message` is refused from its frame header (1009) before any of its
    payload is read. After EV_TEXT/EV_BINARY/EV_PING/EV_PONG the payload
    stays valid until the next feed().
    """

    @micropython.native
    def __init__(self, message, max_message):
        self.message = message
        self.max_message = max_message
        self.control = bytearray(_CONTROL_MAX)
        self._hdr = bytearray(_HEADER_MAX)
        self._key = bytearray(4)  # this frame's masking key
        self.reset()

    @micropython.native
    def reset(self):
        self.pos = 0  # where feed() stopped in the caller's buffer
        self.msg_len = 0
        self.ctl_len = 0
        self.close_code = CLOSE_NO_STATUS
        self.error_code = 0
        self.error_reason = ""
        self._msg_op = OP_CONT  # opcode of the message being reassembled, if any
        self._utf8 = utf8.ACCEPT
        self._hlen = 0  # header bytes collected
        self._hneed = 2  # header bytes needed before the payload starts
        self._op = 0
        self._fin = False
        self._left = -1  # payload bytes still to come; -1 while in the header
        self._phase = 0
        self._delivered = False  # a message was handed out; drop it on next feed
        self._closing = False
        self._resume = -1

    @micropython.native
    def _fail(self, code, reason, resume=-1):
        # `resume` is where drain_mode() picks the byte stream up again: -1 the
        # next header, -4 this header's length field, n > 0 the rest of a
        # payload, -3 nowhere (the stream cannot be followed).
        self.error_code = code
        self.error_reason = reason
        self._resume = resume
        self._left = -2  # failed: feed() keeps returning the error
        return EV_ERROR

    @micropython.native
    def drain_mode(self):
        """After our close frame is sent: skip every frame until the peer's close.

        RFC 6455 7.1.1 wants the server to close TCP once the peer's close
        frame arrives; reading past the rest of a refused frame finds it, and
        reading every byte before close() keeps the kernel from answering
        with an RST that would destroy our close frame in flight. From now on
        feed() returns EV_CLOSE for the peer's close frame, EV_ERROR when the
        stream cannot be followed, and EV_NONE otherwise.
        """
        self._closing = True
        if self._left == -2:
            resume = self._resume
            if resume == -4:  # refused on its first two bytes: read its length anyway
                self._hlen = 2
                self._hneed = 2
                resume = -1
            elif resume == -1:
                self._hlen = 0
                self._hneed = 2
            self._left = resume

    @micropython.native
    def feed(self, buf, start, end):
        """Consume buf[start:end] until an event; self.pos says how far it got.

        Cut into small steps on purpose: MicroPython puts the frame of a
        function with more than 11 words of locals and stack on the heap, at
        every call. Each step stays under that, so parsing allocates nothing.
        """
        if self._left <= -2:
            self.pos = start
            return EV_ERROR
        if self._delivered:
            self._delivered = False
            self.msg_len = 0
        self.pos = start
        while True:
            if self._left < 0:
                ev = self._header(buf, end)
            else:
                ev = self._payload(buf, end)
            if ev != _MORE:
                return ev

    @micropython.native
    def _header(self, buf, end):
        hdr = self._hdr
        hlen = self._hlen
        pos = self.pos
        while hlen < self._hneed and pos < end:
            hdr[hlen] = buf[pos]
            hlen += 1
            pos += 1
        self._hlen = hlen
        self.pos = pos
        if hlen < self._hneed:
            return EV_NONE
        if hlen == 2:
            hlen = self._first_two()  # an event, or 0 to go on
            if hlen:
                return hlen
            if self._hneed > 2:
                return _MORE
        return self._header_done() or _MORE

    @micropython.native
    def _payload(self, buf, end):
        left = self._left
        if left:
            n = end - self.pos
            if n <= 0:
                return EV_NONE
            if n > left:
                n = left
            left -= n
            self._left = left
            if self._closing:
                self.pos += n
            else:
                self._unmask(buf, n)
                if self._utf8 == utf8.REJECT:
                    # Fail fast: an invalid byte ends the connection before the
                    # rest of the message is even read (Autobahn 6.4.x).
                    return self._fail(
                        CLOSE_INVALID_DATA, "invalid UTF-8 in text message", left or -1
                    )
            if left:
                return _MORE
        return self._frame_done() or _MORE

    @micropython.native
    def direct_room(self):
        """Payload bytes of the data frame being read that are still to come:
        the caller may read them straight into the message buffer at msg_len
        and hand them over with took(). 0 outside a data frame's payload."""
        if self._left > 0 and self._op < OP_CLOSE and not self._closing:
            return self._left
        return 0

    @micropython.native
    def took(self, n):
        """n payload bytes (at most direct_room()) were read into
        message[msg_len:msg_len + n], still masked: unmask them in place and
        go on as feed() would; the event, EV_NONE if none yet."""
        msg = self.message
        self._phase = unmask_copy(msg, self.msg_len, msg, self.msg_len, n, self._key, self._phase)
        self.msg_len += n
        left = self._left - n
        self._left = left
        if self._msg_op == OP_TEXT:
            self._utf8 = utf8.scan(msg, self.msg_len - n, self.msg_len, self._utf8)
            if self._utf8 == utf8.REJECT:
                return self._fail(CLOSE_INVALID_DATA, "invalid UTF-8 in text message", left or -1)
        if left:
            return EV_NONE
        return self._frame_done()

    @micropython.native
    def _unmask(self, buf, n):
        if self._op >= OP_CLOSE:
            self._phase = unmask_copy(
                self.control, self.ctl_len, buf, self.pos, n, self._key, self._phase
            )
            self.ctl_len += n
        else:
            self._phase = unmask_copy(
                self.message, self.msg_len, buf, self.pos, n, self._key, self._phase
            )
            self.msg_len += n
            if self._msg_op == OP_TEXT:
                self._utf8 = utf8.scan(self.message, self.msg_len - n, self.msg_len, self._utf8)
        self.pos += n

    @micropython.native
    def _first_two(self):
        hdr = self._hdr
        b0 = hdr[0]
        b1 = hdr[1]
        op = b0 & 0x0F
        self._op = op
        self._fin = bool(b0 & 0x80)
        n = b1 & 0x7F
        if self._closing:
            self._hneed = (2 if n < 126 else (4 if n == 126 else 10)) + (4 if b1 & 0x80 else 0)
            return EV_NONE
        if b0 & 0x70:
            return self._fail(CLOSE_PROTOCOL_ERROR, "reserved bits set without an extension", -4)
        if not b1 & 0x80:
            return self._fail(CLOSE_PROTOCOL_ERROR, "client frame not masked", -4)
        if op >= OP_CLOSE:
            if op > OP_PONG:
                return self._fail(CLOSE_PROTOCOL_ERROR, "unknown opcode", -4)
            if not self._fin:
                return self._fail(CLOSE_PROTOCOL_ERROR, "fragmented control frame", -4)
            if b1 & 0x7F > _CONTROL_MAX:
                return self._fail(CLOSE_PROTOCOL_ERROR, "control frame over 125 bytes", -4)
        elif op > OP_BINARY:
            return self._fail(CLOSE_PROTOCOL_ERROR, "unknown opcode", -4)
        elif op == OP_CONT:
            if self._msg_op == OP_CONT:
                return self._fail(CLOSE_PROTOCOL_ERROR, "continuation frame without a message", -4)
        elif self._msg_op != OP_CONT:
            return self._fail(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented message", -4)
        self._hneed = 6 if n < 126 else (8 if n == 126 else 14)
        return EV_NONE

    @micropython.native
    def _header_done(self):
        hdr = self._hdr
        n = hdr[1] & 0x7F
        if n == 126:
            n = (hdr[2] << 8) | hdr[3]
        elif n == 127:
            if hdr[2] & 0x80:
                return self._fail(CLOSE_PROTOCOL_ERROR, "payload length has the top bit set", -3)
            # Lengths of 2**24 and up exceed any buffer this server has; refuse
            # them without building a big int (which would allocate on ESP32).
            if hdr[2] | hdr[3] | hdr[4] | hdr[5] | hdr[6]:
                return self._fail(CLOSE_TOO_BIG, "message too big", -3)
            n = (hdr[7] << 16) | (hdr[8] << 8) | hdr[9]
        op = self._op
        if self._closing:
            self._left = n
            return EV_NONE
        self._take_key()
        if op < OP_CLOSE:
            if op != OP_CONT:
                self._msg_op = op
                self._utf8 = utf8.ACCEPT
            if self.msg_len + n > self.max_message:
                return self._fail(CLOSE_TOO_BIG, "message too big", n)
        else:
            self.ctl_len = 0
        self._left = n
        self._phase = 0
        return EV_NONE

    @micropython.native
    def _take_key(self):
        hdr = self._hdr
        k = self._hneed - 4
        key = self._key
        key[0] = hdr[k]
        key[1] = hdr[k + 1]
        key[2] = hdr[k + 2]
        key[3] = hdr[k + 3]

    @micropython.native
    def _frame_done(self):
        # Ready for the next header, whatever this frame was.
        self._hlen = 0
        self._hneed = 2
        self._left = -1
        op = self._op
        if self._closing:
            return EV_CLOSE if op == OP_CLOSE else EV_NONE
        if op == OP_PING:
            return EV_PING
        if op == OP_PONG:
            return EV_PONG
        if op == OP_CLOSE:
            return self._close_frame()
        if not self._fin:
            return EV_NONE
        msg_op = self._msg_op
        self._msg_op = OP_CONT
        self._delivered = True
        if msg_op == OP_TEXT:
            if self._utf8 != utf8.ACCEPT:
                return self._fail(CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence")
            return EV_TEXT
        return EV_BINARY

    @micropython.native
    def _close_frame(self):
        n = self.ctl_len
        ctl = self.control
        if n == 0:
            self.close_code = CLOSE_NO_STATUS
            return EV_CLOSE
        if n == 1:
            return self._fail(CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload")
        code = (ctl[0] << 8) | ctl[1]
        if not close_code_valid(code):
            return self._fail(CLOSE_PROTOCOL_ERROR, "invalid close code")
        if utf8.scan(ctl, 2, n, utf8.ACCEPT) != utf8.ACCEPT:
            return self._fail(CLOSE_INVALID_DATA, "close reason is not UTF-8")
        self.close_code = code
        return EV_CLOSE


@micropython.native
def write_header(buf, off, op, n, fin=True):
    """Write an unmasked server frame header at buf[off:]; return its size.
    A server frame never exceeds one tx buffer (16 KiB at most), so the
    64-bit length form is never needed."""
    buf[off] = (0x80 if fin else 0) | op
    if n < 126:
        buf[off + 1] = n
        return 2
    buf[off + 1] = 126
    buf[off + 2] = n >> 8
    buf[off + 3] = n & 0xFF
    return 4
