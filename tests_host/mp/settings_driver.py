# Runs under MicroPython: the board's settings loader (stormproof.settings) on
# files the test writes. stdin, one JSON object a line:
#   {"load": "path"}                    -> {"settings": {...}, "problems": [...]}
#   {"save": {...}, "path": "path"}     -> {"saved": true} or {"error": "..."}
import json
import sys

sys.path.insert(0, sys.argv[1])
from stormproof import settings  # noqa: E402

for line in sys.stdin:
    req = json.loads(line)
    if "load" in req:
        values, problems = settings.load(req["load"])
        print(json.dumps({"settings": values, "problems": problems}))
    else:
        try:
            settings.save(req["save"], req["path"])
            print(json.dumps({"saved": True}))
        except ValueError as e:
            print(json.dumps({"error": str(e)}))
