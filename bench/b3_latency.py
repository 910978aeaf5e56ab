"""B3: latency of ``/dev/ping`` and of a refused ``/processor/process``
while ``worker_threads`` jobs of 256 MiB run, against the same server idle.

One client, one keep-alive connection, a request every 10 ms, alternating
the two routes; the same number of samples idle and under load.
Target: p99 under load < 50 ms.

    python -m bench.b3_latency [--size 256M] [--chart bench/b3_latency.png]
"""

import argparse
import http.client
import os
import time
from collections.abc import Callable

from bench.harness import PopeyeStack, human, machine, parse_size, percentile, scratch, table, write_random_file

TARGET_MS = 50
ROUTES = ("/dev/ping?a=1", "/processor/process?path=/etc/passwd")


def sample(port: int, keep_going: Callable[[int], bool], pause: float = 0.01) -> dict[str, list[float]]:
    """Latencies in ms per route, while ``keep_going(requests so far)``."""
    latencies: dict[str, list[float]] = {route: [] for route in ROUTES}
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        n = 0
        while keep_going(n):
            route = ROUTES[n % len(ROUTES)]
            started = time.perf_counter()
            connection.request("GET", route)
            connection.getresponse().read()
            latencies[route].append((time.perf_counter() - started) * 1000)
            n += 1
            time.sleep(pause)
    finally:
        connection.close()
    return latencies


def run(size: int) -> dict[str, dict[str, list[float]]]:
    with scratch("popeye-b3-") as work:
        stack = PopeyeStack(work)
        server = stack.start()
        try:
            threads = int(stack.config.get("worker_threads", 4))
            sources = [write_random_file(os.path.join(work, f"source-{i}"), size) for i in range(threads)]
            file_ids = [stack.place(source) for source in sources]
            for file_id in file_ids:
                stack.notify(file_id)

            def jobs_running(_n: int) -> bool:
                return not all(state == "done" for state in stack.states(file_ids).values())

            load = sample(server.port, jobs_running)
            total = sum(len(v) for v in load.values())
            idle = sample(server.port, lambda n: n < total)
        finally:
            stack.stop()
    return {"idle": idle, "load": load}


def report(size: int, results: dict) -> str:
    rows = []
    for route in ROUTES:
        idle, load = results["idle"][route], results["load"][route]
        p99 = percentile(load, 0.99)
        rows.append([f"`{route.split('?')[0]}`{' (refused)' if 'process' in route else ''}", len(load),
                     f"{percentile(idle, 0.5):.1f}", f"{percentile(idle, 0.99):.1f}",
                     f"{percentile(load, 0.5):.1f}", f"{p99:.1f}", f"{max(load):.1f}",
                     "yes" if p99 < TARGET_MS else "**no**"])
    header = ["route", "samples", "idle p50 ms", "idle p99 ms", "load p50 ms", "load p99 ms", "load max ms",
              f"load p99 < {TARGET_MS} ms"]
    return f"B3, {machine()}, 4 jobs of {human(size)} running\n\n" + table(header, rows)


def chart(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(ROUTES), figsize=(11, 4), sharey=True)
    for axis, route in zip(axes, ROUTES):
        for label, style in (("idle", "-"), ("load", "--")):
            values = sorted(results[label][route])
            fractions = [(i + 1) / len(values) for i in range(len(values))]
            axis.plot(values, fractions, style, label=f"{label} (p99 {percentile(values, 0.99):.1f} ms)")
        axis.axvline(TARGET_MS, color="red", linewidth=0.8, label=f"target {TARGET_MS} ms")
        axis.set_xscale("log")
        axis.set_title(route.split("?")[0] + (" (refused)" if "process" in route else ""))
        axis.set_xlabel("latency, ms (log)")
        axis.legend(loc="lower right", fontsize=8)
    axes[0].set_ylabel("fraction of requests")
    figure.suptitle("B3: request latency, idle and while 4 uploads run")
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=parse_size, default=parse_size("256M"))
    parser.add_argument("--chart", help="write a latency-distribution PNG here (needs matplotlib)")
    args = parser.parse_args()
    results = run(args.size)
    print(report(args.size, results))
    if args.chart:
        chart(results, args.chart)


if __name__ == "__main__":
    main()
