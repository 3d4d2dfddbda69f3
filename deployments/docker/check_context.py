#!/usr/bin/env python3
"""Checks the Docker build context without a Docker engine (run by verify.sh).

Applies the root .dockerignore the way Docker does (the last matching pattern wins, `!`
re-includes, a pattern matching a directory covers everything below it, `**` spans
directories), then checks that every COPY source of the Dockerfile (other than `--from=`
stages) is in the context and that the bulky or private paths are not. With --stage DIR it
also copies the context into DIR, so that `cargo metadata --locked` can prove the workspace
resolves from the context alone.

usage: check_context.py REPO_ROOT DOCKERFILE [--stage DIR]
"""
import os
import re
import shutil
import sys


def pattern_regex(pattern):
    """A .dockerignore pattern as a regex over '/'-separated paths relative to the root."""
    out, i = "^", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + "$")


def load_rules(path):
    rules = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            pat = os.path.normpath(line[1:] if negate else line).lstrip("/")
            rules.append((negate, pat, pattern_regex(pat)))
    return rules


def excluded(rel, rules):
    """Docker's rule: a path is excluded when the last pattern matching it, or one of its
    parent directories, is not a negation."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    result = False
    for negate, _, rx in rules:
        if any(rx.match(p) for p in prefixes):
            result = not negate
    return result


def context_files(root, rules):
    negations = [pat for negate, pat, _ in rules if negate]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        keep = []
        for d in dirnames:
            rel = rel_dir + d
            # Prune an excluded directory unless a negation could re-include something in it.
            if excluded(rel, rules) and not any(n.startswith(rel + "/") or "*" in n for n in negations):
                continue
            keep.append(d)
        dirnames[:] = keep
        files += [rel_dir + f for f in filenames if not excluded(rel_dir + f, rules)]
    return files


def copy_sources(dockerfile):
    """Sources of every COPY/ADD that reads the build context."""
    text = open(dockerfile, encoding="utf-8").read().replace("\\\n", " ")
    sources = []
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].upper() not in ("COPY", "ADD"):
            continue
        args = [w for w in words[1:] if not w.startswith("--")]
        if any(w.startswith("--from") for w in words[1:]):
            continue
        sources += [os.path.normpath(s) for s in args[:-1]]
    return sources


def main():
    args = sys.argv[1:]
    stage = None
    if "--stage" in args:
        i = args.index("--stage")
        stage = args[i + 1]
        del args[i : i + 2]
    if len(args) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    root, dockerfile = args
    rules = load_rules(os.path.join(root, ".dockerignore"))
    files = context_files(root, rules)
    problems = []
    sources = copy_sources(dockerfile)
    if not sources:
        problems.append("no COPY from the build context found in " + dockerfile)
    for src in sources:
        if not os.path.exists(os.path.join(root, src)):
            problems.append(f"COPY source {src} does not exist")
        elif not any(f == src or f.startswith(src + "/") for f in files):
            problems.append(f"COPY source {src} is excluded by .dockerignore")
    for private in (".git", "target", "fuzz", "bench", "tests", "deployments/helm"):
        leaked = [f for f in files if f == private or f.startswith(private + "/")]
        if leaked:
            problems.append(f"{private} is in the build context ({len(leaked)} files)")
    for p in problems:
        print("build context: " + p, file=sys.stderr)
    if problems:
        return 1
    if stage:
        for f in files:
            os.makedirs(os.path.join(stage, os.path.dirname(f)), exist_ok=True)
            shutil.copy2(os.path.join(root, f), os.path.join(stage, f))
    size = sum(os.path.getsize(os.path.join(root, f)) for f in files)
    print(f"build context OK: {len(files)} files, {size // 1024} KiB; COPY sources: {' '.join(sources)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
