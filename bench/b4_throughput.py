"""B4: requests per second and p99 on ``/dev/ping`` and a refused
``/processor/process``, 32 connections (wrk), for the same WSGI app under
``twistd popeye``, Apache mod_wsgi (the legacy vhost: daemon process, 15
threads) and gunicorn (``-k gthread --threads 15``).

The three servers run side by side and are measured in turn, for several
rounds; the table gives each one's median.  wrk shares the machine's cores
with the server, as in the reference figures.
Targets: ``twistd popeye`` >= gunicorn and >= 0.8 x Apache mod_wsgi.

    python -m bench.b4_throughput [--duration 10] [--rounds 3] [--connections 32]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
from contextlib import ExitStack, contextmanager

from bench.harness import PopeyeStack, machine, median, scratch, table
from tests.support import free_port, http_get, wait_until

ROUTES = ("/dev/ping?a=1", "/processor/process?path=/etc/passwd")
APACHE_FACTOR = 0.8
TWISTD, GUNICORN, APACHE = "twistd popeye", "gunicorn gthread 15", "Apache mod_wsgi 15"


def wrk(url: str, duration: int, connections: int) -> tuple[float, float]:
    """(requests per second, p99 latency in ms) from wrk."""
    output = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency", url],
        check=True, capture_output=True, text=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE).groups()
    return rps, float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]


def _answering(url: str) -> str:
    def answers():
        try:
            return http_get(url + "/dev/ping", timeout=2)[0] == 200
        except OSError:
            return False

    wait_until(answers, 30, url)
    return url


@contextmanager
def twistd_popeye(work: str):
    stack = PopeyeStack(work, storage="local", workflow="spool", notifier="log", loglevel=("`", "WARNING"))
    try:
        yield _answering(stack.start().url)
    finally:
        stack.stop()


@contextmanager
def gunicorn(work: str):
    stack = PopeyeStack(work, storage="local", workflow="spool", notifier="log", loglevel=("`", "WARNING"))
    stack.prepare_database()
    port = free_port()
    process = subprocess.Popen(
        [os.path.join(os.path.dirname(sys.executable), "gunicorn"), "-k", "gthread", "--threads", "15", "-w", "1",
         "-b", f"127.0.0.1:{port}", "--log-level", "warning", "popeye.wsgi:application"],
        cwd=work, env=dict(os.environ, PYTHONPATH=os.getcwd()),
    )
    try:
        yield _answering(f"http://127.0.0.1:{port}")
    finally:
        process.terminate()
        process.wait(30)


@contextmanager
def apache():
    from tests.apache import ApacheServer, local_config

    server = ApacheServer(process_group="staging")
    try:
        server.write_config("popeye.config", local_config(server.home))
        server.write_config("staging.config", "loglevel: `WARNING`\n")
        server.start()
        yield _answering(server.url(""))
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    samples: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with scratch("popeye-b4-") as work, ExitStack() as servers:
        urls = {
            TWISTD: servers.enter_context(twistd_popeye(os.path.join(work, "twistd"))),
            GUNICORN: servers.enter_context(gunicorn(os.path.join(work, "gunicorn"))),
            APACHE: servers.enter_context(apache()),
        }
        for url in urls.values():
            wrk(url + ROUTES[0], 2, args.connections)  # warm-up
        for _ in range(args.rounds):
            for name, url in urls.items():
                for route in ROUTES:
                    samples.setdefault((name, route), []).append(wrk(url + route, args.duration, args.connections))
    rows = []
    for route in ROUTES:
        rps = {name: median(r for r, _ in samples[(name, route)]) for name in urls}
        for name in urls:
            p99 = median(p for _, p in samples[(name, route)])
            rows.append([f"`{route.split('?')[0]}`", name, f"{rps[name]:.0f}", f"{p99:.1f}",
                         f"{rps[TWISTD] / rps[name]:.2f}"])
        met = rps[TWISTD] >= rps[GUNICORN] and rps[TWISTD] >= APACHE_FACTOR * rps[APACHE]
        rows.append(["", "targets met" if met else "**targets missed**", "", "", ""])
    header = ["route", "server", "requests/s (median)", "p99 ms (median)", "twistd popeye / this"]
    print(f"B4, {machine()}, wrk -t2 -c{args.connections} -d{args.duration}s, {args.rounds} rounds\n\n"
          + table(header, rows))


if __name__ == "__main__":
    main()
