#!/usr/bin/env python3
"""Fails when a crate's modules import each other in a circle.

For every crate source tree given (default: the workspace's four), each
file's module path is derived from its place (`src/engine/converge.rs` is
`engine::converge`), and every `crate::`, `super::` and `self::` path in its
non-test code is resolved to the module it names. Two modules depend on each
other through their nearest common parent: `engine::converge` using
`diff::plan` is an edge `engine -> diff` among the crate root's children.
A parent and its own child may know each other; siblings must depend one
way. Test code (a file's `#[cfg(test)]` tail, `tests.rs` files) is left out:
tests may reach across. Prints each circle and exits 1, or prints the
number of edges checked and exits 0.
"""
import re
import sys
from pathlib import Path

ROOTS = ["src", "netlink-ipvs/src", "kube-standin/src", "integration/src"]
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
COMMENT = re.compile(r"//.*")


def module_of(root: Path, file: Path):
    parts = list(file.relative_to(root).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return parts


def modules(root: Path):
    known = set()
    for file in root.rglob("*.rs"):
        known.add(tuple(module_of(root, file)))
    return known


def code_of(file: Path):
    text = file.read_text()
    cut = text.find("#[cfg(test)]")
    if cut >= 0:
        text = text[:cut]
    return "\n".join(COMMENT.sub("", line) for line in text.splitlines())


def resolve(base, kind, rest, known):
    if kind == "crate":
        path = []
    elif kind == "self":
        path = list(base)
    else:
        path = list(base[:-1])
    names = rest.strip(":").split("::")
    for name in names:
        if name == "super":
            path = path[:-1]
            continue
        if tuple(path + [name]) in known:
            path.append(name)
        else:
            break
    return tuple(path)


def check(root: Path):
    known = modules(root)
    edges = {}
    for file in sorted(root.rglob("*.rs")):
        if file.name == "tests.rs" or "tests" in file.relative_to(root).parts[:-1]:
            continue
        base = tuple(module_of(root, file))
        for kind, rest in PATH.findall(code_of(file)):
            target = resolve(base, kind, rest, known)
            common = 0
            while common < min(len(base), len(target)) and base[common] == target[common]:
                common += 1
            if common == len(base) or common == len(target):
                continue  # parent and child
            parent = base[:common]
            edge = (base[common], target[common])
            edges.setdefault(parent, {}).setdefault(edge, []).append(f"{file}: {kind}{rest}")
    circles = []
    for parent, level in edges.items():
        graph = {}
        for (a, b) in level:
            graph.setdefault(a, set()).add(b)
        for start in graph:
            stack = [(start, [start])]
            while stack:
                node, trail = stack.pop()
                for nxt in graph.get(node, ()):
                    if nxt == start:
                        circle = trail + [start]
                        if min(circle[:-1]) == start:
                            circles.append((parent, circle, level))
                    elif nxt not in trail:
                        stack.append((nxt, trail + [nxt]))
    return sum(len(level) for level in edges.values()), circles


def main():
    roots = sys.argv[1:] or ROOTS
    failed = False
    for root in roots:
        count, circles = check(Path(root))
        for parent, circle, level in circles:
            failed = True
            where = "::".join(parent) or "crate"
            print(f"{root}: import circle in {where}: {' -> '.join(circle)}")
            for a, b in zip(circle, circle[1:]):
                print(f"    {a} -> {b}: {level[(a, b)][0]}")
        print(f"{root}: {count} module edges checked, {len(circles)} circles")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
