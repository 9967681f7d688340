"""Run make targets one after another and write how long each took, as JSON.

    python3 bench/make_steps.py --make make --out build/bench-make-steps.json \
        venv=.venv/.installed jars=infra/spark/jars/.fetched,infra/kafka/libs/.fetched

Standard library only: on a fresh clone it runs before the virtualenv exists, so that
``make bench`` can report what ``make demo``'s own steps (venv, jars) cost there.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--make", default="make")
    parser.add_argument("--out", required=True)
    parser.add_argument("steps", nargs="+", metavar="NAME=TARGET[,TARGET...]", help="file targets, so that make -q can tell")
    args = parser.parse_args(argv)
    steps = {}
    for step in args.steps:
        name, _, spec = step.partition("=")
        targets = [target for target in spec.split(",") if target] or [name]
        # `make -q` exits 0 when the targets are up to date: the timing then measures a check only.
        up_to_date = subprocess.run([args.make, "-q", *targets], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        started = time.perf_counter()
        result = subprocess.run([args.make, "--no-print-directory", *targets])
        seconds = time.perf_counter() - started
        if result.returncode != 0:
            print(f"make {' '.join(targets)} failed ({result.returncode})", file=sys.stderr)
            return result.returncode
        steps[name] = {"seconds": round(seconds, 3), "up_to_date": up_to_date, "targets": targets}
        print(f"{name} (make {' '.join(targets)}): {seconds:.1f}s{' (up to date)' if up_to_date else ''}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"recorded": time.time(), "steps": steps}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
