"""calibration-dataset: build INT8 calibration sets from images with the model's
preprocessing spec.

Not implemented yet: the quantization issue builds it. Until then this command says so
and exits non-zero; it never writes a made-up dataset."""

from __future__ import annotations

import argparse
import sys

PROG = "calibration-dataset"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="NOT IMPLEMENTED YET: INT8 calibration datasets "
                                     "and Q/DQ quantization with an accuracy comparison.")
    parser.add_argument("images", nargs="?")
    parser.parse_args(argv)
    print(f"{PROG}: not implemented yet (quantization issue)", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
