"""settings.json for a board, written and checked by the device's own loader.

    python tools/settings.py make --ssid home --key secret [--hostname h] [--ap-key k] --out settings.json
    python tools/settings.py stage [--profile test] [--source settings.json] --out build/esp32/settings.json
    python tools/settings.py env --profile test   (STORMPROOF_* variables: make run PROFILE=test)

`make` keeps the fields of an existing file it does not set. `stage` copies
the file into a staging tree, with a profile's server settings on top; with
no file (and no profile) it writes nothing, so a deploy leaves the board's
own settings (entered on its setup page) alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# The short timeouts the host suite's robustness tests need from a board
# (make deploy PROFILE=test); the board reports them at /config.
PROFILES = {"test": json.loads((ROOT / "tools" / "test_profile.json").read_text())}


def device_settings():
    """lib/stormproof/settings.py, loaded as a plain module (the package's
    __init__ needs MicroPython)."""
    spec = importlib.util.spec_from_file_location(
        "stormproof_settings", ROOT / "lib" / "stormproof" / "settings.py"
    )
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def read(path: Path, mod) -> dict:
    if not path.exists():
        return {}
    values, problems = mod.load(str(path))
    if problems:
        sys.exit(f"{path}:\n  " + "\n  ".join(problems))
    return {k: v for k, v in values.items() if v != mod.DEFAULTS[k]}


def write(values: dict, out: Path, mod) -> None:
    try:
        mod.save(values, str(out))
    except ValueError as e:
        sys.exit(f"settings: {e}")
    shown = dict(values)
    for secret in ("key", "ap_key"):
        if shown.get(secret):
            shown[secret] = "***"
    print(f"{out}: {json.dumps(shown)}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    mk = sub.add_parser("make")
    mk.add_argument("--ssid", default="")
    mk.add_argument("--key", default="")
    mk.add_argument("--hostname", default="")
    mk.add_argument("--ap-key", default="")
    mk.add_argument("--out", type=Path, default=ROOT / "settings.json")
    st = sub.add_parser("stage")
    st.add_argument("--profile", default="")
    st.add_argument("--source", type=Path, default=ROOT / "settings.json")
    st.add_argument("--out", type=Path, required=True)
    env = sub.add_parser("env")
    env.add_argument("--profile", required=True)
    args = ap.parse_args(argv)
    if args.cmd == "env":
        # The unix port takes its overrides from the environment: a server
        # that runs as a board deployed with this profile does.
        if args.profile not in PROFILES:
            sys.exit(f"PROFILE={args.profile}: unknown (known: {', '.join(PROFILES)})")
        values = dict(PROFILES[args.profile], profile=args.profile)
        print(" ".join(f"STORMPROOF_{k.upper()}={v}" for k, v in values.items()))
        return
    mod = device_settings()

    if args.cmd == "make":
        if not args.ssid:
            sys.exit(
                "usage: make config SSID=<network> KEY=<password> [HOSTNAME=stormproof] [AP_KEY=...]"
            )
        values = read(args.out, mod)
        values.update(ssid=args.ssid, key=args.key)
        if args.hostname:
            values["hostname"] = args.hostname
        if args.ap_key:
            values["ap_key"] = args.ap_key
        write(values, args.out, mod)
        return

    if args.profile and args.profile not in PROFILES:
        sys.exit(f"PROFILE={args.profile}: unknown (known: {', '.join(PROFILES)})")
    if not args.source.exists():
        if args.profile:
            sys.exit(
                f"PROFILE={args.profile} needs {args.source} (the board's Wi-Fi settings "
                "would be replaced): run make config SSID=... KEY=... first"
            )
        print(
            f"no {args.source.name}: none staged (the board keeps its own, or opens its setup access point)"
        )
        return
    values = read(args.source, mod)
    if args.profile:
        values["profile"] = args.profile
        values["server"] = dict(values.get("server", {}), **PROFILES[args.profile])
    write(values, args.out, mod)


if __name__ == "__main__":
    main()
