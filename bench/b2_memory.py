"""B2: peak RSS of the Popeye process during one job, against the same
measurement for a 64 MiB job.

Each size gets a fresh ``twistd popeye`` (peak RSS only grows), one job,
and the kernel's high-water mark (VmHWM) after it.
Targets: the 2 GiB job's peak <= 1.2 x the 64 MiB job's, and < 200 MiB.

    python -m bench.b2_memory [--sizes 64M,2G]
"""

import argparse
import os

from bench.harness import PopeyeStack, human, machine, peak_rss_mib, scratch, sizes, table, write_random_file

RATIO_TARGET = 1.2
ABSOLUTE_TARGET_MIB = 200


def peak_for(size: int) -> float:
    with scratch("popeye-b2-") as work:
        source = write_random_file(os.path.join(work, "source"), size)
        stack = PopeyeStack(work)
        server = stack.start()
        try:
            file_id = stack.place(source)
            stack.notify(file_id)
            stack.wait_done([file_id])
            return peak_rss_mib(server.process.pid)
        finally:
            stack.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=sizes("64M,2G"))
    args = parser.parse_args()
    peaks = [(size, peak_for(size)) for size in args.sizes]
    base = peaks[0][1]
    rows = []
    for size, peak in peaks:
        ratio = peak / base
        met = ratio <= RATIO_TARGET and peak < ABSOLUTE_TARGET_MIB
        rows.append([human(size), f"{peak:.1f}", f"{ratio:.3f}", "yes" if met else "**no**"])
    header = ["job size", "peak RSS MiB", f"ratio to {human(peaks[0][0])}",
              f"<= {RATIO_TARGET}x and < {ABSOLUTE_TARGET_MIB} MiB"]
    print(f"B2, {machine()}\n\n" + table(header, rows))


if __name__ == "__main__":
    main()
