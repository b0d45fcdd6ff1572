#!/usr/bin/env python3
"""Fails when a workspace crate depends on a crate at its own layer or above.

Berth's crates are layered (docs/architecture.md): berth-api at the bottom,
then berth-runtime, berth-control, berth-admin, and the `berth` command on
top. Cargo refuses a dependency cycle; this check, run by `make test`, also
keeps the arrows pointing down, so a lower crate never grows a dependency on
one above it. Every workspace crate must have a layer here.

Usage: tools/crate_layers.py   (exit 1 and the offending edges if any)
"""
import json
import subprocess
import sys

# Lower numbers sit lower. Crates on one layer may not depend on each other.
LAYERS = {
    "berth-api": 0,
    "berth-sdk": 0,
    "berth-runtime": 1,
    "berth-control": 2,
    "berth-admin": 3,
    "berth": 4,
    "berth-e2e": 5,
}

metadata = json.loads(
    subprocess.run(
        ["cargo", "metadata", "--format-version", "1", "--no-deps"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
)
members = {p["name"]: p for p in metadata["packages"]}
problems = []
for name, package in sorted(members.items()):
    if name not in LAYERS:
        problems.append(f"{name} has no layer in tools/crate_layers.py")
        continue
    for dep in package["dependencies"]:
        if dep["name"] not in members or dep.get("kind") == "dev":
            continue
        if LAYERS[dep["name"]] >= LAYERS[name]:
            problems.append(
                f"{name} (layer {LAYERS[name]}) depends on {dep['name']} (layer {LAYERS[dep['name']]})"
            )
if problems:
    print("crate layers broken:\n  " + "\n  ".join(problems))
    sys.exit(1)
print(f"crate layers hold: {len(members)} crates")
