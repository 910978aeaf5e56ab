"""B5: 50 uploads of 8 MiB notified at once, time until every workflow has
started, against ``md5sum F && aws s3 cp F ...`` for the same files with the
same parallelism as ``worker_threads`` (``xargs -P``), on the same moto server.
Target: ratio Popeye / reference <= 1.1 (median of the pairs).

    python -m bench.b5_batch [--count 50] [--size 8M] [--pairs 3]
"""

import argparse
import os
import subprocess
import sys
import time

from bench.harness import PopeyeStack, human, machine, median, parse_size, scratch, table, write_random_file
from tests.support import BUCKET

TARGET = 1.1


def reference(sources: list[str], parallel: int, endpoint: str) -> float:
    aws = os.path.join(os.path.dirname(sys.executable), "aws")
    script = (f'md5sum "$1" >/dev/null && {aws} s3 cp --quiet --endpoint-url {endpoint} '
              f'"$1" s3://{BUCKET}/reference/$(basename "$1")')
    started = time.perf_counter()
    subprocess.run(["xargs", "-P", str(parallel), "-n", "1", "sh", "-c", script, "sh"],
                   input="\n".join(sources).encode(), check=True,
                   env=dict(os.environ, AWS_DEFAULT_REGION="us-east-1"))
    return time.perf_counter() - started


def popeye(stack: PopeyeStack, sources: list[str]) -> float:
    file_ids = [stack.place(source) for source in sources]
    started = time.perf_counter()
    for file_id in file_ids:
        stack.notify(file_id)
    stack.wait_done(file_ids)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--size", type=parse_size, default=parse_size("8M"))
    parser.add_argument("--pairs", type=int, default=3)
    args = parser.parse_args()
    with scratch("popeye-b5-") as work:
        stack = PopeyeStack(work, queue_limit=args.count)
        stack.start()
        parallel = int(stack.config.get("worker_threads", 4))
        try:
            sources = [write_random_file(os.path.join(work, f"source-{i}"), args.size) for i in range(args.count)]
            ours, theirs = [], []
            for _ in range(args.pairs):
                stack.reset()
                theirs.append(reference(sources, parallel, stack.moto.endpoint))
                stack.reset()
                ours.append(popeye(stack, sources))
        finally:
            stack.stop()
    ratio = median(ours) / median(theirs)
    rows = [[args.count, human(args.size), parallel, f"{median(ours):.2f}", f"{median(theirs):.2f}",
             f"{ratio:.3f}", "yes" if ratio <= TARGET else "**no**"]]
    header = ["uploads", "size", "parallel", "Popeye s (median)", "md5sum + aws s3 cp, xargs -P s (median)",
              "ratio", f"ratio <= {TARGET}"]
    print(f"B5, {machine()}, {args.pairs} pairs\n\n" + table(header, rows))


if __name__ == "__main__":
    main()
