#!/usr/bin/env python3
"""Builds kollect-collect's CEL conformance cases from the CEL specification's "simple" tests.

The CEL specification publishes its conformance tests as text-format protobuf files in the Go
module `cel.dev/expr` (tests/simple/testdata). This script reads them from the Go module cache
(downloading the pinned version if needed) and writes the cases that can run against Kollect's
CEL environment to kollect-collect/tests/data/cel-conformance.json, in our own format:

    {"file": ..., "section": ..., "name": ..., "expr": ..., "check": bool,
     "value": <typed value> | "error": <cel-go's error text, may be empty>}

A typed value is a one-key object: {"int": "5"}, {"uint": "5"}, {"double": 1.5 | "inf" | "-inf" |
"nan" | "-0"}, {"string": ...}, {"bytes": <base64>}, {"bool": ...}, {"null": null},
{"list": [...]}, {"map": [[key, value], ...]}, {"type": "int"}. Integers are strings so that
64-bit values survive JSON readers.

A case is left out, and counted per file, when it cannot mean the same thing here: it binds
variables other than none (Kollect programs see only `object`), declares a type environment,
uses a container, protobuf messages or enums, or only checks deduced types. The counts are
printed; `--check` fails when the committed file differs from what the script would write.
"""

import argparse
import base64
import json
import os
import pathlib
import subprocess
import sys

MODULE = "cel.dev/expr"
VERSION = "v0.25.1"  # the version cel-go v0.31.0 (the Go operator's CEL) depends on
OUTPUT = pathlib.Path(__file__).resolve().parents[2] / "kollect-collect/tests/data/cel-conformance.json"

# Files whose cases need protobuf message types, enums or checker-only results throughout.
SKIPPED_FILES = {
    "enums": "protobuf enums",
    "proto2": "protobuf messages",
    "proto2_ext": "protobuf extensions",
    "proto3": "protobuf messages",
    "wrappers": "protobuf wrapper types",
    "type_deduction": "checker-only type deduction",
    "unknowns": "partial evaluation",
    "block_ext": "cel.block (internal optimiser extension)",
    "bindings_ext": "cel.bind, not registered",
    "network_ext": "Kubernetes IP/CIDR library, not in this crate",
    "sets_ext": "sets extension, not in this crate",
    "lists_ext": "cel-go lists extension newer than the Go operator's",
}

PROTO_MARKERS = ("TestAllTypes", "google.protobuf", "cel.expr.", "NestedTestAllTypes", "proto.")


def module_dir():
    gomodcache = subprocess.run(
        ["go", "env", "GOMODCACHE"], check=True, capture_output=True, text=True
    ).stdout.strip()
    path = pathlib.Path(gomodcache) / f"{MODULE}@{VERSION}"
    if not path.is_dir():
        subprocess.run(
            ["go", "mod", "download", f"{MODULE}@{VERSION}"],
            check=True,
            env={**os.environ, "GOFLAGS": "-mod=mod"},
            cwd="/tmp",
        )
    return path / "tests/simple/testdata"


# --- a reader for the text format: just enough of it for these files -------------------------


class Reader:
    def __init__(self, text):
        self.text = text
        self.pos = 0

    def skip(self):
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c.isspace():
                self.pos += 1
            elif c == "#":
                while self.pos < len(self.text) and self.text[self.pos] != "\n":
                    self.pos += 1
            else:
                return

    def peek(self):
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def word(self):
        self.skip()
        start = self.pos
        while self.pos < len(self.text) and (self.text[self.pos].isalnum() or self.text[self.pos] in "_.-+"):
            self.pos += 1
        if start == self.pos:
            raise ValueError(f"expected a word at {self.pos}: {self.text[self.pos:self.pos + 30]!r}")
        return self.text[start : self.pos]

    def string(self):
        """One or more adjacent quoted strings, as bytes (escapes decoded)."""
        out = bytearray()
        while self.peek() in ("'", '"'):
            quote = self.text[self.pos]
            self.pos += 1
            while self.text[self.pos] != quote:
                c = self.text[self.pos]
                if c != "\\":
                    out += c.encode()
                    self.pos += 1
                    continue
                e = self.text[self.pos + 1]
                self.pos += 2
                if e in "01234567":
                    digits = e
                    while len(digits) < 3 and self.text[self.pos] in "01234567":
                        digits += self.text[self.pos]
                        self.pos += 1
                    out.append(int(digits, 8))
                elif e == "x":
                    digits = ""
                    while len(digits) < 2 and self.text[self.pos] in "0123456789abcdefABCDEF":
                        digits += self.text[self.pos]
                        self.pos += 1
                    out.append(int(digits, 16))
                elif e in "uU":
                    width = 4 if e == "u" else 8
                    out += chr(int(self.text[self.pos : self.pos + width], 16)).encode()
                    self.pos += width
                else:
                    out += {"n": b"\n", "t": b"\t", "r": b"\r", "a": b"\a", "b": b"\b", "f": b"\f", "v": b"\v"}.get(
                        e, e.encode()
                    )
            self.pos += 1
        return bytes(out)

    def message(self, close):
        fields = []
        while True:
            c = self.peek()
            if c == close:
                self.pos += 1
                return fields
            if c == "":
                if close == "":
                    return fields
                raise ValueError("unexpected end of file")
            if c == "[":  # an extension or Any type URL used as a field name
                end = self.text.index("]", self.pos)
                name, self.pos = self.text[self.pos : end + 1], end + 1
            else:
                name = self.word()
            if self.peek() == ":":
                self.pos += 1
            fields.append((name, self.value()))
            if self.peek() in (",", ";"):
                self.pos += 1

    def value(self):
        c = self.peek()
        if c in "{<":
            self.pos += 1
            return self.message("}" if c == "{" else ">")
        if c in "'\"":
            return self.string()
        if c == "[":
            self.pos += 1
            items = []
            while self.peek() != "]":
                items.append(self.value())
                if self.peek() == ",":
                    self.pos += 1
            self.pos += 1
            return items
        return self.word()


def get(fields, name, default=None):
    for key, value in fields:
        if key == name:
            return value
    return default


def get_all(fields, name):
    return [value for key, value in fields if key == name]


# --- conversion -------------------------------------------------------------------------------


class Unsupported(Exception):
    pass


def double(word):
    low = word.lower()
    if low in ("inf", "infinity"):
        return "inf"
    if low in ("-inf", "-infinity"):
        return "-inf"
    if low == "nan":
        return "nan"
    number = float(word)
    if number == 0 and word.startswith("-"):
        return "-0"
    return number


def typed(fields):
    (kind, raw), *_ = fields
    if kind == "int64_value":
        return {"int": str(int(raw))}
    if kind == "uint64_value":
        return {"uint": str(int(raw))}
    if kind == "double_value":
        return {"double": double(raw)}
    if kind == "string_value":
        return {"string": raw.decode("utf-8")}
    if kind == "bytes_value":
        return {"bytes": base64.b64encode(raw).decode()}
    if kind == "bool_value":
        return {"bool": raw == "true"}
    if kind == "null_value":
        return {"null": None}
    if kind == "type_value":
        name = raw.decode()
        if any(marker in name for marker in PROTO_MARKERS):
            raise Unsupported("protobuf type")
        return {"type": name}
    if kind == "list_value":
        return {"list": [typed(v) for v in get_all(raw, "values")]}
    if kind == "map_value":
        return {"map": [[typed(get(e, "key")), typed(get(e, "value"))] for e in get_all(raw, "entries")]}
    raise Unsupported(kind)


def case(file, section, test):
    expr = get(test, "expr").decode("utf-8")
    for reason, present in (
        ("bindings", get(test, "bindings") is not None),
        ("type environment", get(test, "type_env") is not None),
        ("container", get(test, "container") is not None),
        ("checker only", get(test, "check_only") == "true" or get(test, "typed_result") is not None),
        ("protobuf messages", any(marker in expr for marker in PROTO_MARKERS)),
    ):
        if present:
            raise Unsupported(reason)
    out = {
        "file": file,
        "section": section,
        "name": get(test, "name").decode(),
        "expr": expr,
        "check": get(test, "disable_check") != "true",
    }
    error = get(test, "eval_error")
    if error is not None:
        messages = [get(e, "message", b"").decode() for e in get_all(error, "errors")]
        out["error"] = messages[0] if messages else ""
    elif get(test, "value") is not None:
        out["value"] = typed(get(test, "value"))
    elif get(test, "unknown") is not None or get(test, "any_eval_errors") is not None:
        raise Unsupported("unknowns")
    else:
        out["value"] = {"bool": True}  # a test without a result expects true
    return out


def build(testdata):
    cases, skipped = [], {}
    for path in sorted(testdata.glob("*.textproto")):
        file = path.stem
        if file in SKIPPED_FILES:
            skipped[file] = SKIPPED_FILES[file]
            continue
        document = Reader(path.read_text()).message("")
        counts = {}
        for section in get_all(document, "section"):
            section_name = get(section, "name").decode()
            for test in get_all(section, "test"):
                try:
                    cases.append(case(file, section_name, test))
                except Unsupported as why:
                    counts[str(why)] = counts.get(str(why), 0) + 1
        if counts:
            skipped[file] = ", ".join(f"{n} {why}" for why, n in sorted(counts.items()))
    return cases, skipped


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed cases are stale")
    args = parser.parse_args()
    cases, skipped = build(module_dir())
    text = json.dumps(
        {"source": f"{MODULE}@{VERSION} tests/simple/testdata", "cases": cases}, indent=1, ensure_ascii=False
    ) + "\n"
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print(f"{OUTPUT} is stale: run python3 hack/conformance/cel_simple.py", file=sys.stderr)
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"{len(cases)} cases written to {OUTPUT.relative_to(OUTPUT.parents[3])}")
    for file, why in sorted(skipped.items()):
        print(f"  left out of {file}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
