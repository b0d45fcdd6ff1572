#!/usr/bin/env python3
"""Fails when the module files of a workspace crate import each other in a
cycle. Dependencies between Berth's modules run one way (see
docs/architecture.md); this check, run by `make test`, keeps them so.

Reads `use crate::a::b` and `super::x` paths (and any other `crate::` path
in code or doc links) as text, maps each to the module file that defines it,
and looks for strongly connected components. Test modules
(`#[cfg(test)] mod tests { ... }` at the end of a file) are left out.

Usage: tools/module_cycles.py [REPO]   (exit 1 and the cycle's edges if any)
"""
import os
import re
import sys

repo = sys.argv[1] if len(sys.argv) > 1 else "."
SKIP = {"target", ".git", "components", ".tools", "node_modules"}


def crates():
    for root, dirs, files in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in SKIP]
        if "Cargo.toml" in files and os.path.isdir(os.path.join(root, "src")):
            yield root


def module_path(src, path):
    parts = os.path.relpath(path, src)[:-3].split(os.sep)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def graph_of(src):
    files = [os.path.join(r, f) for r, _, fs in os.walk(src) for f in fs if f.endswith(".rs")]
    modules = {tuple(module_path(src, f)): f for f in files}
    graph = {f: set() for f in files}
    for f in files:
        me = module_path(src, f)
        with open(f, encoding="utf-8", errors="replace") as fh:
            text = fh.read()
        text = re.sub(r"#\[cfg\(test\)\]\s*mod tests\s*\{.*", "", text, flags=re.S)
        for m in re.finditer(r"\b(crate|super)((?:::\w+)+)", text):
            parts = m.group(2).strip(":").split("::")
            base = [] if m.group(1) == "crate" else me[:-1]
            path = base + parts
            while path and tuple(path) not in modules:
                path = path[:-1]
            target = modules.get(tuple(path))
            if target and target != f and path:
                graph[f].add(target)
    return graph


def components(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


failed = False
for crate in crates():
    src = os.path.join(crate, "src")
    graph = graph_of(src)
    for comp in components(graph):
        failed = True
        members = set(comp)
        rel = lambda p: os.path.relpath(p, crate)
        print(f"{os.path.relpath(crate, repo)}: {len(comp)} module files import each other in a cycle:")
        for f in sorted(comp):
            for t in sorted(graph[f] & members):
                print(f"  {rel(f)} -> {rel(t)}")
sys.exit(1 if failed else 0)
