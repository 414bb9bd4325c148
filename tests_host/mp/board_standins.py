# Stand-ins for the ESP32's `network`, `machine` and `esp32` modules, for
# board.py under the unix port (no board exists here). They model what
# board.py relies on and record what it did, in order, in CALLS.
CALLS = []


class Reset(Exception):
    """machine.reset(): the stand-in ends the code under test instead."""


class Module:
    pass


# ---- network --------------------------------------------------------------

net = Module()
net.STAT_IDLE = 1000
net.STAT_CONNECTING = 1001
net.STAT_GOT_IP = 1010
net.STAT_WRONG_PASSWORD = 202
net.STAT_NO_AP_FOUND = 201
net.AUTH_WPA2_PSK = 3
# The air around the board: the network there is, and how it behaves.
AIR = {"ssid": "home", "key": "12345678", "polls": 3, "ip": "192.168.1.50", "up": True}


def _hostname(name=None):
    CALLS.append(["hostname", name])


net.hostname = _hostname


class WLAN:
    IF_STA = 0
    IF_AP = 1
    PM_NONE = 0
    _all = {}

    def __new__(cls, iface):  # one object per interface, as on the board
        if iface not in cls._all:
            w = object.__new__(cls)
            w.iface = iface
            w.on = False
            w.cfg = {}
            w.state = net.STAT_IDLE
            w.polls = 0
            w.target = None
            cls._all[iface] = w
        return cls._all[iface]

    def __init__(self, iface):
        pass

    def _name(self):
        return "sta" if self.iface == 0 else "ap"

    def active(self, on=None):
        if on is not None:
            CALLS.append([self._name() + ".active", on])
            self.on = on
        return self.on

    def config(self, *args, **kw):
        if args:
            return {"mac": b"\x24\x6f\x28\x01\xab\xcd"}[args[0]]
        CALLS.append([self._name() + ".config", kw])
        self.cfg.update(kw)

    def connect(self, ssid, key):
        CALLS.append(["sta.connect", ssid, key])
        self.target = (ssid, key)
        self.polls = 0
        self.state = net.STAT_CONNECTING

    def disconnect(self):
        CALLS.append(["sta.disconnect"])
        self.state = net.STAT_IDLE
        self.target = None

    def status(self):
        return self.state

    def isconnected(self):
        if self.iface == 1:
            return self.on
        if self.state == net.STAT_GOT_IP and not AIR["up"]:
            self.state = net.STAT_IDLE  # the network went away
        if self.state == net.STAT_CONNECTING:
            self.polls += 1
            if self.target[0] != AIR["ssid"] or not AIR["up"]:
                if self.polls >= AIR["polls"]:
                    self.state = net.STAT_NO_AP_FOUND
            elif self.target[1] != AIR["key"]:
                if self.polls >= AIR["polls"]:
                    self.state = net.STAT_WRONG_PASSWORD
            elif self.polls >= AIR["polls"] >= 0:  # polls < 0: never answers
                self.state = net.STAT_GOT_IP
        return self.state == net.STAT_GOT_IP

    def ifconfig(self):
        CALLS.append([self._name() + ".ifconfig"])
        ip = "192.168.4.1" if self.iface == 1 else AIR["ip"]
        return (ip, "255.255.255.0", ip, "8.8.8.8")


net.WLAN = WLAN

# ---- machine --------------------------------------------------------------

mach = Module()
mach.PWRON_RESET = 1
mach.HARD_RESET = 2
mach.WDT_RESET = 3
mach.DEEPSLEEP_RESET = 4
mach.SOFT_RESET = 5
BOARD = {"cause": 1, "pins": {}}


def _reset_cause():
    return BOARD["cause"]


def _reset():
    CALLS.append(["machine.reset"])
    raise Reset()


class Pin:
    IN = 1
    PULL_UP = 2

    def __init__(self, n, mode=None, pull=None):
        self.n = n
        CALLS.append(["Pin", n, mode, pull])

    def value(self):
        return BOARD["pins"].get(str(self.n), 1)  # pulled up: 1 unless held


class WDT:
    def __init__(self, timeout):
        CALLS.append(["WDT", timeout])
        self.fed = 0

    def feed(self):
        self.fed += 1


mach.reset_cause = _reset_cause
mach.reset = _reset
mach.Pin = Pin
mach.WDT = WDT

# ---- esp32 ----------------------------------------------------------------

esp = Module()
esp.HEAP_DATA = 4
# (total, free, largest free block, minimum free) per IDF heap region
esp.REGIONS = [(100000, 30000, 24000, 20000), (50000, 12000, 9000, 8000)]
esp.idf_heap_info = lambda caps: list(esp.REGIONS)


def install():
    import sys

    sys.modules["network"] = net
    sys.modules["machine"] = mach
    sys.modules["esp32"] = esp
