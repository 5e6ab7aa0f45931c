"""Measure what loads where between rsae and the real SAELens (docs/rsae.md, "SAELens interop").

Writes every family through every SAELens save path (``rsae.saelens.measure_interop``), loads it on the other side,
and records the largest |Δ| of codes and reconstructions in ``benchmarks/results/saelens_interop.json``; prints the
markdown table of docs/rsae.md. Run from the repository root::

    python3 -m benchmarks.saelens_interop --json-out benchmarks/results/saelens_interop.json --markdown
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

import sae_lens

from rsae.saelens import interop_markdown, measure_interop

RESULTS = Path(__file__).parent / "results" / "saelens_interop.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json-out", type=Path, default=RESULTS, help="where to write the records (JSON)")
    parser.add_argument("--markdown", action="store_true", help="print the table of docs/rsae.md")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        records = measure_interop()
    document = {"sae_lens_version": sae_lens.__version__, "records": records}
    args.json_out.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    if args.markdown:
        print(interop_markdown(records), end="")
    return 0 if all(r["status"] in ("ok", "n/a") for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
