"""model-benchmark: latency percentiles, throughput, batch sweeps, Jetson power modes.

Not implemented yet: the benchmark issue builds it on tegra_ai's runner interface.
Until then this command says so and exits non-zero; it never prints made-up numbers."""

from __future__ import annotations

import argparse
import sys

PROG = "model-benchmark"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="NOT IMPLEMENTED YET: engine benchmarking "
                                     "(latency percentiles, throughput, batch sweeps, power modes). "
                                     "Until it lands use trtexec (/usr/src/tensorrt/bin/trtexec --loadEngine=...).")
    parser.add_argument("engine", nargs="?")
    parser.parse_args(argv)
    print(f"{PROG}: not implemented yet; use /usr/src/tensorrt/bin/trtexec --loadEngine=ENGINE meanwhile",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
