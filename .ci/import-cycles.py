#!/usr/bin/env python3
"""Finds import cycles between the files of a Rust crate (issue 11, item 2).

    .ci/import-cycles.py CRATE_DIR...      e.g. .ci/import-cycles.py agent collector proto

An edge A -> B is a `crate::b::...` path in file A (in `use` lines, grouped
`use crate::{b, c::d}` imports and inline paths) that resolves to file B (the
longest module prefix that is a file). `super::` and `self::` paths count too.
Not counted: a file's own `#[cfg(test)] mod tests` (test code), and edges between a module and its own
ancestors (a child using its parent's items while the parent declares and re-exports
the child is how Rust modules nest). Prints each cycle (a strongly connected group of
files) with the edges inside it; exits 1 if any crate has one.
"""
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def modules(src):
    """module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for root, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            full = os.path.join(root, f)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            if rel == ["main"]:
                continue  # the binary is a crate of its own
            out[path] = full
    return out


def expand_group(body):
    """`a, b::{c, d}, e::f as g` -> ['a', 'b::c', 'b::d', 'e::f']"""
    items, depth, cur = [], 0, ""
    for ch in body:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append(cur)
            cur = ""
        else:
            cur += ch
    items.append(cur)
    out = []
    for it in items:
        it = it.strip()
        if not it:
            continue
        m = re.match(r"^(.*?)::\{(.*)\}$", it, re.S)
        if m:
            out += [m.group(1) + "::" + x for x in expand_group(m.group(2))]
        else:
            out.append(re.split(r"\s+as\s+", it)[0].strip())
    return out


def references(text, here):
    """Absolute module paths named in `text`, the file of module `here`."""
    text = re.split(r"#\[cfg\(test\)\]\s*mod tests", text)[0]
    text = re.sub(r"//[^\n]*", "", text)
    out = []
    for root, base in (("crate", ()), ("super", here[:-1]), ("self", here)):
        refs = []
        for m in re.finditer(rf"(?<![A-Za-z0-9_:]){root}::\{{(.*?)\}};", text, re.S):
            refs += expand_group(m.group(1))
        for m in re.finditer(rf"(?<![A-Za-z0-9_:]){root}::((?:{IDENT}::)*{IDENT})", text):
            refs.append(m.group(1))
        out += [base + tuple(r.split("::")) for r in refs if r and r != "self"]
    return out


def resolve(mods, ref):
    for n in range(len(ref), 0, -1):
        if ref[:n] in mods:
            return ref[:n]
    return None


def graph(src):
    mods = modules(src)
    edges = {m: set() for m in mods}
    for m, f in mods.items():
        with open(f, encoding="utf-8") as fh:
            text = fh.read()
        for ref in references(text, m):
            t = resolve(mods, ref)
            if t is None or t == m:
                continue
            # ancestor <-> descendant: module nesting, not an import cycle
            if t == m[: len(t)] or m == t[: len(m)]:
                continue
            edges[m].add(t)
    return mods, edges


def sccs(edges):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    crates = sys.argv[1:] or ["."]
    found = False
    for crate in crates:
        src = os.path.join(crate, "src")
        mods, edges = graph(src)
        cycles = sccs(edges)
        name = lambda m: "::".join(m) or "crate"
        if not cycles:
            print(f"{crate}: no import cycles between its {len(mods)} files")
            continue
        found = True
        print(f"{crate}: {len(cycles)} import cycle(s)")
        for comp in cycles:
            print("  cycle: " + ", ".join(name(m) for m in comp))
            for a in comp:
                for b in sorted(edges[a]):
                    if b in comp:
                        print(f"    {name(a)} -> {name(b)}")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
