#!/usr/bin/env python3
"""Helm's own lint and rendering, through helm-python-sdk (Helm's Go SDK in a shared library
bundled in the wheel: no helm binary, no download, no cluster).

    helm_sdk.py version
    helm_sdk.py lint     CHART [-f VALUES]... [--set K=V]... [--set-string K=V]...
                         [--set-file K=PATH]... [--kube-version v1.30.0]
    helm_sdk.py template CHART (the same value options) [--name N]
                         [--namespace NS] --out FILE      (every manifest, as `helm template`)
                         [--notes FILE]                   (the rendered NOTES.txt)
                         [--values-out FILE]              (the values Helm rendered with, JSON)

Values files, then --set, --set-string and --set-file, are merged as `helm install` does; the
chart's values.schema.json is applied by Helm's render (and lint).
Exit status: 0 on success, 1 when lint reports an error (or a warning: lint runs strict) or a
render fails, with Helm's message on stderr.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import helm_python as helm

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def merge(dst: dict, src: dict) -> dict:
    """Helm's coalescing of user values: maps merge key by key, anything else replaces."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge(dst[key], value)
        else:
            dst[key] = value
    return dst


def user_values(args: argparse.Namespace) -> dict:
    values: dict = {}
    for path in args.values or []:
        merge(values, helm.values_from_yaml(pathlib.Path(path).read_text()))
    for expr in args.set or []:
        merge(values, helm.parse_set_string(expr))
    for expr in args.set_string or []:
        merge(values, helm.parse_set_string_values(expr))
    for expr in args.set_file or []:
        merge(values, helm.parse_set_file(expr))
    return values


def cmd_lint(args: argparse.Namespace) -> int:
    report = helm.lint(
        args.chart, user_values(args), strict=True, kube_version=args.kube_version
    )
    failed = bool(report.get("errors"))
    for msg in report.get("messages") or []:
        severity = SEVERITY.get(msg.get("severity"), str(msg.get("severity")))
        print(f"[{severity}] {msg.get('path')}: {msg.get('error')}")
        if msg.get("severity", 0) >= 2:
            failed = True
    for err in report.get("errors") or []:
        print(f"[ERROR] {err}")
    linted = report.get("total_charts_linted", 0)
    print(f"{linted} chart(s) linted, {'failed' if failed else 'no failures'}")
    return 1 if failed or linted < 1 else 0


def cmd_template(args: argparse.Namespace) -> int:
    values = user_values(args)
    with helm.Chart.load(args.chart) as chart:
        try:
            rendered = chart.render(
                values=values, name=args.name, namespace=args.namespace,
                is_install=True, revision=1,
            )
        except helm.HelmError as err:
            print(f"render failed: {err}", file=sys.stderr)
            return 1
    docs = []
    notes = ""
    for path in sorted(rendered):
        text = rendered[path]
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        if not text.strip():
            continue
        docs.append(f"---\n# Source: {path}\n{text.strip()}\n")
    pathlib.Path(args.out).write_text("".join(docs))
    if args.notes:
        pathlib.Path(args.notes).write_text(notes)
    if args.values_out:
        with helm.Chart.load(args.chart) as chart:
            merged = chart.merge_values(values)
        pathlib.Path(args.values_out).write_text(json.dumps(merged, indent=2, sort_keys=True))
    print(f"rendered {len(docs)} template(s) to {args.out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("version")
    for name in ("lint", "template"):
        p = sub.add_parser(name)
        p.add_argument("chart")
        p.add_argument("-f", "--values", action="append")
        p.add_argument("--set", action="append")
        p.add_argument("--set-string", action="append")
        p.add_argument("--set-file", action="append")
        if name == "lint":
            p.add_argument("--kube-version", default="v1.30.0")
        else:
            p.add_argument("--name", default="gogate")
            p.add_argument("--namespace", default="default")
            p.add_argument("--out", required=True)
            p.add_argument("--notes")
            p.add_argument("--values-out")
    args = parser.parse_args()
    if args.cmd == "version":
        print(f"helm-python-sdk {helm.__version__}, helm-c {helm.helm_c_version()}, "
              f"Helm Go SDK {helm.helm_sdk_version()} ({helm.library_path})")
        return 0
    return cmd_lint(args) if args.cmd == "lint" else cmd_template(args)


if __name__ == "__main__":
    sys.exit(main())
