#!/usr/bin/env python3
"""Checks Prometheus text exposition (format 0.0.4) read on stdin.

    curl -s http://127.0.0.1:9001/metrics | scripts/check_metrics.py

Parses it with prometheus_client's parser (pip install prometheus_client)
and exits non-zero on a parse error, on a family without HELP or TYPE (a
sample whose name is not its family's lands in an "unknown" family of its
own, so this also catches a counter family not named with its _total), or
on a family that appears twice. Otherwise prints one line per sample:

    name value
    name{label="value",...} value

labels sorted by name, values escaped as in the exposition format, numbers
as Python prints them (5, 2.5, 1e-07, inf, -inf, nan). Used by
src/metrics.rs's tests and by the integration tests.
"""

import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.exit("check_metrics.py: needs prometheus_client (pip install prometheus_client)")


def escape(value):
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def main():
    text = sys.stdin.read()
    errors = []
    seen = set()
    lines = []
    try:
        for family in text_string_to_metric_families(text):
            if family.name in seen:
                errors.append(f"{family.name}: family appears twice")
            seen.add(family.name)
            # prometheus_client names a family without TYPE "unknown" (older
            # releases: "untyped").
            if family.type in ("unknown", "untyped") or not family.documentation:
                names = sorted({s.name for s in family.samples}) or [family.name]
                errors.append(f"{', '.join(names)}: no HELP or no TYPE (type {family.type})")
            for s in family.samples:
                labels = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(s.labels.items()))
                name = f"{s.name}{{{labels}}}" if labels else s.name
                lines.append(f"{name} {s.value!r}")
    except Exception as e:  # the parser raises ValueError, and others on odd input
        sys.exit(f"check_metrics.py: parse error: {e}")
    if errors:
        sys.exit("check_metrics.py:\n  " + "\n  ".join(errors))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
