"""B1: wall time per upload, notification to workflow started, against
``md5sum F && aws s3 cp F s3://bucket/key`` on the same moto server.

Popeye's run and the reference run alternate (pairs), on the same file, so
both read it from the page cache and both see the same machine load.
Target: median ratio Popeye / reference <= 1.05 at every size.

    python -m bench.b1_bandwidth [--sizes 64M,512M,2G] [--pairs 3]
"""

import argparse
import os
import time

from bench.harness import (
    PopeyeStack,
    human,
    machine,
    median,
    reference_upload,
    scratch,
    sizes,
    table,
    write_random_file,
)

TARGET = 1.05


def popeye_upload(stack: PopeyeStack, source: str) -> float:
    file_id = stack.place(source)
    started = time.perf_counter()
    stack.notify(file_id)
    stack.wait_done([file_id])
    return time.perf_counter() - started


def run(size_list: list[int], pairs: int) -> list[dict]:
    results = []
    with scratch("popeye-b1-") as work:
        stack = PopeyeStack(work)
        stack.start()
        try:
            for size in size_list:
                source = write_random_file(os.path.join(work, f"source-{size}"), size)
                stack.reset()
                popeye_upload(stack, source)  # warm-up: page cache, connections
                ours, theirs = [], []
                for pair in range(pairs):
                    stack.reset()
                    theirs.append(reference_upload(source, f"reference/{pair}", stack.moto.endpoint))
                    stack.reset()
                    ours.append(popeye_upload(stack, source))
                os.unlink(source)
                results.append({"size": size, "popeye": ours, "reference": theirs})
        finally:
            stack.stop()
    return results


def report(results: list[dict]) -> str:
    rows = []
    for r in results:
        ours, theirs = median(r["popeye"]), median(r["reference"])
        ratio = ours / theirs
        rows.append([human(r["size"]), f"{ours:.2f}", f"{theirs:.2f}", f"{ratio:.3f}",
                     f"{r['size'] / ours / 2**20:.0f}", "yes" if ratio <= TARGET else "**no**"])
    header = ["size", "Popeye s (median)", "md5sum + aws s3 cp s (median)", "ratio", "Popeye MiB/s",
              f"ratio <= {TARGET}"]
    return f"B1, {machine()}, {len(results[0]['popeye'])} pairs per size\n\n" + table(header, rows)


def chart(results: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    mib = [r["size"] / 2**20 for r in results]
    for key, label, style in (("popeye", "Popeye (notification to workflow started)", "o-"),
                              ("reference", "md5sum + aws s3 cp", "s--")):
        axis.plot(mib, [median(r[key]) for r in results], style, label=label)
        for r, x in zip(results, mib):
            axis.scatter([x] * len(r[key]), r[key], s=8, alpha=0.4)
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("upload size, MiB")
    axis.set_ylabel("wall time, s (median; dots: each run)")
    axis.set_title("B1: one upload to a local moto server")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=sizes, default=sizes("64M,512M,2G"))
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--chart", help="write a time-against-size PNG here (needs matplotlib)")
    args = parser.parse_args()
    results = run(args.sizes, args.pairs)
    print(report(results))
    if args.chart:
        chart(results, args.chart)


if __name__ == "__main__":
    main()
