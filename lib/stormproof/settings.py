"""The board's one settings file, settings.json: read, checked field by field, defaulted.

Pure (no network, no machine): the same code runs on a board at boot, under
the unix port in the tests and under CPython in `make config`. A bad field
never stops a boot: it is named in a problem line and replaced by its
default, so a typo costs the setting, not the board. Loaded at boot and
released after (nothing here is needed while serving).
"""

FILE = "settings.json"

DEFAULTS = {
    "ssid": "",  # the Wi-Fi network to join; empty: open the setup access point
    "key": "",  # its password; empty: an open network
    "hostname": "stormproof",  # DHCP and mDNS name (stormproof.local)
    "ap_key": "",  # the setup access point's password; empty: one made for this board
    "wifi_timeout": 20000,  # ms to join the network before the setup access point opens
    "watchdog": 30000,  # ms the sweep may stay away before the board resets; 0: off
    "profile": "",  # "test": the short timeouts the host suite expects (make deploy PROFILE=test)
    "server": {},  # Config overrides, e.g. {"max_clients": 3}; checked when the server starts
}
PROFILES = ("", "test")


def load(path=FILE):
    """(settings, problems): every field of DEFAULTS, from the file where it
    is valid; problems is a list of lines saying what was not and why."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return check({}, [path + ": missing; defaults used"])
    import json

    try:
        raw = json.loads(text)
    except ValueError as e:
        return check({}, ["%s: not valid JSON (%s); defaults used" % (path, e)])
    if not isinstance(raw, dict):
        return check({}, [path + ": not a JSON object; defaults used"])
    return check(raw, [])


def check(raw, problems):
    out = {}
    for name in DEFAULTS:
        default = DEFAULTS[name]
        if name not in raw:
            out[name] = default
            continue
        why = problem(name, raw[name])
        if why:
            problems.append("%s: %s; default %r used" % (name, why, default))
            out[name] = default
        else:
            out[name] = raw[name]
    for name in raw:
        if name not in DEFAULTS:
            problems.append(name + ": unknown field, ignored")
    return out, problems


def problem(name, v):
    """Why value v cannot be setting `name`, or None."""
    default = DEFAULTS[name]
    if type(v) is not type(default):
        return "must be " + ("text" if isinstance(default, str) else type(default).__name__)
    if name == "ssid" and len(v.encode()) > 32:
        return "at most 32 bytes"
    if name in ("key", "ap_key") and v and not 8 <= len(v) <= 63:
        return "8 to 63 characters (WPA2), or empty"
    if name == "hostname" and not _hostname_ok(v):
        return "1 to 63 letters, digits or '-', not starting or ending with '-'"
    if name == "wifi_timeout" and not 1000 <= v <= 120000:
        return "1000 to 120000 ms"
    if name == "watchdog" and v and not 5000 <= v <= 600000:
        return "0 (off) or 5000 to 600000 ms"
    if name == "profile" and v not in PROFILES:
        return "one of " + ", ".join(repr(p) for p in PROFILES)
    if name == "server":
        return _server_problem(v)
    return None


def _server_problem(server):
    # Names and ranges are Config's to check when the server starts (a
    # ConfigError naming the setting); here only what JSON can get wrong.
    for k in server:
        v = server[k]
        if k != "host" and (not isinstance(v, int) or isinstance(v, bool)):
            return "%s must be a number" % k
    return None


def _hostname_ok(h):
    if not 1 <= len(h) <= 63 or h[0] == "-" or h[-1] == "-":
        return False
    return all("a" <= c <= "z" or "A" <= c <= "Z" or "0" <= c <= "9" or c == "-" for c in h)


def save(values, path=FILE):
    """Write the settings that differ from the defaults (checked first:
    ValueError naming the field otherwise)."""
    import json

    out = {}
    for name in values:
        if name not in DEFAULTS:
            raise ValueError(name + ": unknown field")
        why = problem(name, values[name])
        if why:
            raise ValueError(name + ": " + why)
        if values[name] != DEFAULTS[name]:
            out[name] = values[name]
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(json.dumps(out))
    import os

    os.rename(tmp, path)  # a power cut leaves the old file or the new one, never half
