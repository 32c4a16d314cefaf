#!/usr/bin/env python3
"""Lists the import cycles between the modules of each crate of the workspace.

Within a crate, no module may use one that uses it back (ARCHITECTURE.md). A module "uses"
another when its non-test code names a path into it: `use crate::a::b`, `super::a`, an
inline `crate::a::f()`, or a name the crate root re-exports from it (`crate::Name` where
lib.rs says `pub use a::Name`). Modules are compared with their siblings: a use of a child
of `a` counts as a use of `a`, and a child using its own parent is not a cycle.

Usage: scripts/module_cycles.py [crate-dir ...]  (default: every crate of the workspace).
Exits 1 and names the modules of each cycle when there is one.
"""

import os
import re
import sys


def blank(src):
    """`src` with comments, strings and chars made spaces, so braces and paths are code."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', src[i:i + 300])) and (i == 0 or not (src[i - 1].isalnum() or src[i - 1] == "_")):
            end = '"' + m.group(1)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "'" and (m := re.match(r"'(\\.[^']*|[^\\'])'", src[i:i + 12])):
            out.append(" " * m.end())
            i += m.end()
        else:
            out.append(c)
            i += 1
    return "".join(out)


def drop_test_modules(code):
    """`code` without `#[cfg(test)] mod x { ... }` blocks and `#[cfg(test)] mod x;` lines."""
    while m := re.search(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*(\{|;)", code):
        if m.group(3) == ";":
            code = code[: m.start()] + code[m.end():]
            continue
        depth, j = 1, m.end()
        while j < len(code) and depth:
            depth += {"{": 1, "}": -1}.get(code[j], 0)
            j += 1
        code = code[: m.start()] + code[j:]
    return code


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [re.sub(r"as\w+$", "", tree)]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    return [p for part in parts if part for p in expand_use(prefix + part)]


class Crate:
    def __init__(self, src_dir):
        self.files = {}  # module path (tuple) -> code
        self.tests = set()
        for dirpath, _, names in os.walk(src_dir):
            for name in names:
                if not name.endswith(".rs"):
                    continue
                rel = os.path.relpath(os.path.join(dirpath, name), src_dir)[:-3].split(os.sep)
                if rel[-1] in ("mod", "lib", "main") and (len(rel) > 1 or rel[-1] != "mod"):
                    rel = rel[:-1]
                with open(os.path.join(dirpath, name), encoding="utf-8") as f:
                    self.files[tuple(rel)] = blank(f.read())
        # Files declared under #[cfg(test)] are test code.
        for mod, code in self.files.items():
            for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", code):
                self.tests.add(mod + (m.group(1),))
        self.files = {
            m: drop_test_modules(c)
            for m, c in self.files.items()
            if not any(m[: len(t)] == t for t in self.tests)
        }
        self.defined = {m: set(re.findall(
            r"\b(?:struct|enum|fn|type|trait|const|static|union|macro_rules!)\s+(\w+)", c))
            for m, c in self.files.items()}
        self.reexports = {}  # (module, name) -> module path it names
        for mod, code in self.files.items():
            for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]+);", code):
                for path in expand_use(m.group(1)):
                    target = self.resolve(mod, path.split("::"), follow=False)
                    if target is None:
                        continue
                    name = path.split("::")[-1]
                    if name == "*":
                        for d in self.defined.get(target, ()):
                            self.reexports.setdefault((mod, d), target)
                    else:
                        self.reexports[(mod, name)] = target

    def resolve(self, mod, segs, follow=True):
        """The module of the crate a path names from `mod`, or None when it leaves the crate."""
        if not segs:
            return None
        if segs[0] == "crate":
            base, segs = (), segs[1:]
        elif segs[0] in ("self", "super"):
            base = mod
            while segs and segs[0] in ("self", "super"):
                if segs[0] == "super":
                    base = base[:-1]
                segs = segs[1:]
        elif mod + (segs[0],) in self.files:
            base = mod
        else:
            return None
        cur = base
        for s in segs:
            if cur + (s,) in self.files:
                cur = cur + (s,)
            elif follow and (cur, s) in self.reexports:
                return self.reexports[(cur, s)]
            else:
                break
        return cur

    def edges(self):
        out = {}
        for mod, code in self.files.items():
            paths = []
            for m in re.finditer(r"\buse\s+([^;]+);", code):
                paths += expand_use(m.group(1))
            code_wo_use = re.sub(r"\buse\s+[^;]+;", "", code)
            paths += re.findall(r"\b((?:crate|super|self)(?:::\w+)+)", code_wo_use)
            for p in paths:
                t = self.resolve(mod, p.split("::"))
                if t is not None:
                    out.setdefault(mod, set()).add(t)
        return out

    def cycles(self):
        """Strongly connected groups of sibling modules, each as a sorted list of names."""
        graphs = {}
        for a, targets in self.edges().items():
            for b in targets:
                k = 0
                while k < min(len(a), len(b)) and a[k] == b[k]:
                    k += 1
                if k == len(a) or k == len(b):
                    continue  # a module and its own ancestor or descendant
                parent = a[:k]
                graphs.setdefault(parent, {}).setdefault(a[: k + 1], set()).add(b[: k + 1])
        found = []
        for graph in graphs.values():
            found += strongly_connected(graph)
        return found


def strongly_connected(graph):
    index, low, stack, on, groups = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted("::".join(g) for g in group))

    for v in list(graph):
        if v not in index:
            visit(v)
    return groups


def main(args):
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    dirs = args or sorted(
        os.path.join(d, sub)
        for d in (root, *(os.path.join(root, p, q) for p in ("crates", "connectors")
                          for q in os.listdir(os.path.join(root, p))))
        for sub in ("src",)
        if os.path.isdir(os.path.join(d, sub))
    )
    bad = 0
    for d in dirs:
        d = d if d.endswith("src") else os.path.join(d, "src")
        for group in Crate(d).cycles():
            bad += 1
            print(f"{os.path.relpath(d, root)}: {' <-> '.join(group)}")
    if bad:
        print(f"{bad} import cycle(s) between modules: give what they share a module of its own")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
