#!/usr/bin/env python3
"""Checks the code blocks of every page of the book (docs/).

- Every fenced block names its language, so nothing is mistaken for Rust or shown unhighlighted.
- A Rust block is either compiled, or says why not:
  * compiled: its body is only `{{#include FILE[:ANCHOR]}}` lines naming a file cargo builds
    (an example or a crate's source), and every anchor exists in that file;
  * not compiled: the fence is `rust,ignore` and the line above it is a comment
    `<!-- not compiled: REASON -->`.

Exit status 1 lists every offending block as `page:line: problem`.
"""
import pathlib
import re
import sys

DOCS = pathlib.Path(__file__).resolve().parents[2] / "docs"
ROOT = DOCS.parent
COMPILED_ROOTS = ("examples", "kollect-core", "kollect-collect", "kollect-sinks", "kollect-operator", "kollect-testkit")
INCLUDE = re.compile(r"^\{\{#include\s+([^\s:}]+)(?::([A-Za-z0-9_-]+))?\s*\}\}$")
REASON = re.compile(r"^<!--\s*not compiled:\s*\S.*-->$")


def check_include(page: pathlib.Path, target: str, anchor: str | None) -> str | None:
    path = (page.parent / target).resolve()
    try:
        relative = path.relative_to(ROOT)
    except ValueError:
        return f"{target} is outside the repository"
    if relative.parts[0] not in COMPILED_ROOTS or path.suffix != ".rs":
        return f"{target} is not Rust code cargo builds"
    if not path.is_file():
        return f"{target} does not exist"
    if anchor:
        text = path.read_text()
        if f"ANCHOR: {anchor}\n" not in text or f"ANCHOR_END: {anchor}\n" not in text:
            return f"{target} has no anchor {anchor}"
    return None


def check_page(page: pathlib.Path) -> list[str]:
    problems = []
    lines = page.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        if not line.startswith("```"):
            i += 1
            continue
        info = line[3:].strip()
        start = i
        i += 1
        body = []
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i].strip())
            i += 1
        i += 1
        where = f"{page.relative_to(ROOT)}:{start + 1}"
        if not info:
            problems.append(f"{where}: code block without a language")
            continue
        tags = info.split(",")
        if tags[0] != "rust":
            continue
        if "ignore" in tags:
            above = lines[start - 1].strip() if start > 0 else ""
            if not REASON.match(above):
                problems.append(f"{where}: rust,ignore block without `<!-- not compiled: reason -->` above it")
            continue
        includes = [INCLUDE.match(b) for b in body if b]
        if not includes or not all(includes):
            problems.append(f"{where}: Rust block is neither an include of compiled code nor rust,ignore")
            continue
        for match in includes:
            problem = check_include(page, match.group(1), match.group(2))
            if problem:
                problems.append(f"{where}: {problem}")
    return problems


def main() -> int:
    problems = [p for page in sorted(DOCS.rglob("*.md")) for p in check_page(page)]
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return 1
    print("book code blocks: every block has a language; Rust blocks are compiled or say why not")
    return 0


if __name__ == "__main__":
    sys.exit(main())
