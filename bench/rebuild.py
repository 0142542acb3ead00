"""Every example built twice from scratch, with its deployment files, for each board: the two builds' files must
be byte-identical (generated output is deterministic). CI checks this for one small design
(``tests/deploy/test_tcl.py``); this runs it for all of them (about a minute per design).

    python bench/rebuild.py [--networks a,b] [--boards x,y] [--offchip MODE]

Prints one JSON object per design (files compared, seconds) and exits non-zero if any file differs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from hwseg.flow import build

ROOT = Path(__file__).resolve().parent.parent


def _files(design, folder: Path) -> dict[str, bytes]:
    design.write(folder)
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--networks", default=",".join(sorted(p.stem for p in (ROOT / "examples").glob("*.pt"))))
    parser.add_argument("--boards", default="pynq-z2,zcu104")
    parser.add_argument("--offchip", default=None)
    args = parser.parse_args(argv)
    failed = 0
    for network in args.networks.split(","):
        for board in args.boards.split(","):
            print(f"building {network} for {board} twice", file=sys.stderr, flush=True)
            started = time.perf_counter()
            with tempfile.TemporaryDirectory() as scratch:
                builds = [_files(build(ROOT / "examples" / f"{network}.pt", board, offchip=args.offchip).with_deploy(),
                                 Path(scratch) / str(k)) for k in range(2)]
            differing = sorted(name for name in builds[0].keys() | builds[1].keys()
                               if builds[0].get(name) != builds[1].get(name))
            failed += bool(differing)
            print(json.dumps({"network": network, "board": board, "files": len(builds[0]), "differing": differing,
                              "seconds": round(time.perf_counter() - started, 1)}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
