"""Soak: a uvloop server under steady load for a set time, watched for growth.

    python soak/soak.py                      # 10 minutes, 10,000 held connections
    python soak/soak.py --minutes 60 --out soak/results

`run` (the default) starts two processes on loopback and watches them:

- the server, on uvloop (`uvloop.run`): a TCP echo server, a TLS echo server, a UDP echo
  endpoint, and a child process started every 200 ms (`/bin/echo`, stdout piped and read);
  once a second it reports its RSS, open descriptors, open libuv handles and live Python
  objects (`gc.get_objects()`);
- the client, on stock asyncio (so that a fault of ours cannot hide one of ours): it opens
  --conns connections and keeps them, each echoing a message every few seconds, while
  --churners workers connect, echo one message and close as fast as they can (one connection in
  --tls-every over TLS), and a UDP sender echoes a datagram every 10 ms.

After --warmup seconds the four series must stay flat: the median of the last third of the
samples may exceed that of the first third by at most the bounds below. The samples go to
<out>/soak-<date>.csv and a plot of the four series to <out>/soak-<date>.png; the summary to
stdout. Exit status 1 if a bound is exceeded or either process failed.
"""

import argparse
import asyncio
import csv
import datetime
import gc
import json
import os
import resource
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
MESSAGE = b"x" * 100

# Growth allowed after warm-up, last third's median over the first third's: (relative, absolute).
BOUNDS = {
    "rss_mib": (0.05, 16.0),
    "fds": (0.02, 64),
    "libuv_handles": (0.02, 64),
    "python_objects": (0.05, 20_000),
}


def raise_fd_limit():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


# The server (uvloop).


async def serve(certfile, keyfile):
    loop = asyncio.get_running_loop()

    class Echo(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    class DatagramEcho(asyncio.DatagramProtocol):
        def connection_made(self, transport):
            self.transport = transport

        def datagram_received(self, data, addr):
            self.transport.sendto(data, addr)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certfile, keyfile)
    tcp = await loop.create_server(Echo, "127.0.0.1", 0, backlog=4096)
    tls = await loop.create_server(Echo, "127.0.0.1", 0, ssl=context, backlog=4096)
    udp, _ = await loop.create_datagram_endpoint(DatagramEcho, local_addr=("127.0.0.1", 0))
    ports = {
        "tcp": tcp.sockets[0].getsockname()[1],
        "tls": tls.sockets[0].getsockname()[1],
        "udp": udp.get_extra_info("sockname")[1],
    }
    print(json.dumps(ports), flush=True)
    children = 0

    async def spawn_children():
        nonlocal children
        while True:
            proc = await asyncio.create_subprocess_exec(
                "/bin/echo", "soak", stdout=asyncio.subprocess.PIPE
            )
            out, _ = await proc.communicate()
            if out != b"soak\n" or proc.returncode != 0:
                raise RuntimeError(f"child gave {out!r}, {proc.returncode}")
            children += 1
            await asyncio.sleep(0.2)

    spawner = asyncio.ensure_future(spawn_children())
    page = os.sysconf("SC_PAGE_SIZE")
    started = time.monotonic()
    stop = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stop.set_result, None)
    while not stop.done():
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * page
        sample = {
            "t": round(time.monotonic() - started, 3),
            "rss_mib": rss / 2**20,
            "fds": len(os.listdir("/proc/self/fd")),
            "libuv_handles": loop._open_libuv_handles(),
            "python_objects": len(gc.get_objects()),
            "children": children,
        }
        print(json.dumps(sample), flush=True)
        await asyncio.wait([stop, spawner], timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
        if spawner.done():
            spawner.result()
    spawner.cancel()
    for server in (tcp, tls):
        server.close()
    udp.close()


# The client (stock asyncio).


async def load(ports, conns, churners, tls_every, deadline):
    loop = asyncio.get_running_loop()
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    counts = {"held": 0, "held_echoes": 0, "churned": 0, "churned_tls": 0, "datagrams": 0,
              "errors": 0}

    async def echo(reader, writer):
        writer.write(MESSAGE)
        if await reader.readexactly(len(MESSAGE)) != MESSAGE:
            raise RuntimeError("echo differs")

    async def held(index):
        reader, writer = await asyncio.open_connection("127.0.0.1", ports["tcp"])
        counts["held"] += 1
        await echo(reader, writer)
        try:
            while loop.time() < deadline:
                await asyncio.sleep(2 + index % 5)
                await echo(reader, writer)
                counts["held_echoes"] += 1
        finally:
            writer.close()

    async def churner(index):
        n = 0
        while loop.time() < deadline:
            n += 1
            tls = n % tls_every == 0
            try:
                reader, writer = await asyncio.open_connection(
                    "127.0.0.1", ports["tls" if tls else "tcp"], ssl=context if tls else None
                )
                await echo(reader, writer)
                writer.close()
                await writer.wait_closed()
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
                counts["errors"] += 1
                await asyncio.sleep(0.1)
                continue
            counts["churned_tls" if tls else "churned"] += 1

    async def datagrams():
        got = asyncio.Queue()

        class Receiver(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                got.put_nowait(data)

        transport, _ = await loop.create_datagram_endpoint(
            Receiver, remote_addr=("127.0.0.1", ports["udp"])
        )
        while loop.time() < deadline:
            transport.sendto(MESSAGE)
            try:
                await asyncio.wait_for(got.get(), 1)
                counts["datagrams"] += 1
            except asyncio.TimeoutError:
                counts["errors"] += 1
            await asyncio.sleep(0.01)
        transport.close()

    tasks = [asyncio.ensure_future(churner(i)) for i in range(churners)]
    tasks.append(asyncio.ensure_future(datagrams()))
    for start in range(0, conns, 500):  # opened in batches, as clients arrive
        tasks += [asyncio.ensure_future(held(i)) for i in range(start, min(conns, start + 500))]
        await asyncio.sleep(0.2)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    failures = [repr(r) for r in results if isinstance(r, BaseException)]
    counts["failed_tasks"] = len(failures)
    counts["first_failures"] = failures[:3]
    print(json.dumps(counts), flush=True)


# The driver.


def make_certificate(folder):
    cert, key = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-keyout", key, "-out", cert],
        check=True, capture_output=True,
    )
    return cert, key


def check(samples, warmup):
    """(series, first third's median, last third's median, allowed growth, ok) per series."""
    steady = [s for s in samples if s["t"] >= warmup]
    third = max(1, len(steady) // 3)
    verdicts = []
    for series, (relative, absolute) in BOUNDS.items():
        first = statistics.median(s[series] for s in steady[:third])
        last = statistics.median(s[series] for s in steady[-third:])
        allowed = max(first * relative, absolute)
        verdicts.append((series, first, last, allowed, last - first <= allowed))
    return verdicts


def plot(samples, warmup, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    labels = {
        "rss_mib": "RSS (MiB)",
        "fds": "open descriptors",
        "libuv_handles": "open libuv handles",
        "python_objects": "live Python objects",
    }
    minutes = [s["t"] / 60 for s in samples]
    for axis, (series, label) in zip(axes, labels.items()):
        axis.plot(minutes, [s[series] for s in samples], linewidth=1)
        axis.axvline(warmup / 60, color="grey", linestyle="--", linewidth=0.8)
        axis.set_ylabel(label)
        axis.grid(alpha=0.3)
    axes[-1].set_xlabel("minutes (dashed: end of warm-up)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def run(args):
    limit = raise_fd_limit()
    if limit < args.conns + 2000:
        sys.exit(f"RLIMIT_NOFILE's hard limit {limit} is too low for --conns {args.conns}")
    os.makedirs(args.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    duration = args.minutes * 60
    warmup = min(args.warmup, duration / 3)
    with tempfile.TemporaryDirectory() as folder:
        cert, key = make_certificate(folder)
        server = subprocess.Popen(
            [args.python, __file__, "server", cert, key], stdout=subprocess.PIPE, text=True
        )
        ports = json.loads(server.stdout.readline())
        client = subprocess.Popen(
            [args.client_python, __file__, "client", json.dumps(ports), str(args.conns),
             str(args.churners), str(args.tls_every), str(duration)],
            stdout=subprocess.PIPE, text=True,
        )
        samples = []
        started = time.monotonic()
        try:
            for line in server.stdout:
                sample = json.loads(line)
                samples.append(sample)
                if len(samples) % 30 == 0:
                    print(f"[soak] {sample['t'] / 60:5.1f}/{args.minutes} min  "
                          f"rss {sample['rss_mib']:.1f} MiB  fds {sample['fds']}  "
                          f"handles {sample['libuv_handles']}  "
                          f"objects {sample['python_objects']}  children {sample['children']}",
                          file=sys.stderr, flush=True)
                if time.monotonic() - started >= duration or client.poll() is not None:
                    break
            counts = json.loads(client.communicate(timeout=120)[0].splitlines()[-1] or "{}")
        finally:
            if client.poll() is None:
                client.kill()
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(30)
            except subprocess.TimeoutExpired:
                server.kill()
    csv_path = os.path.join(args.out, f"soak-{stamp}.csv")
    with open(csv_path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(samples[0]))
        writer.writeheader()
        writer.writerows(samples)
    png_path = os.path.join(args.out, f"soak-{stamp}.png")
    plot(samples, warmup, png_path,
         f"uvloop soak: {args.conns} held connections, {args.churners} churners, "
         f"{args.minutes} min")
    verdicts = check(samples, warmup)
    print(f"soak: {args.minutes} min, {len(samples)} samples, warm-up {warmup:.0f} s; "
          f"client: {json.dumps(counts)}")
    print("| series | first third (median) | last third (median) | growth | allowed | ok |")
    print("|---|---:|---:|---:|---:|---|")
    for series, first, last, allowed, ok in verdicts:
        print(f"| {series} | {first:,.1f} | {last:,.1f} | {last - first:+,.1f} | "
              f"{allowed:,.1f} | {'yes' if ok else 'NO'} |")
    print(f"csv: {csv_path}\nplot: {png_path}")
    failed = not all(v[4] for v in verdicts) or server.returncode not in (0, -signal.SIGTERM)
    failed = failed or counts.get("failed_tasks", 1) != 0 or counts.get("held", 0) < args.conns
    if failed:
        print("soak FAILED", file=sys.stderr)
    return 1 if failed else 0


def main(argv):
    if argv[:1] == ["server"]:
        import uvloop

        raise_fd_limit()
        uvloop.run(serve(argv[1], argv[2]))
        return 0
    if argv[:1] == ["client"]:
        raise_fd_limit()
        ports, conns, churners, tls_every, duration = argv[1:6]
        loop = asyncio.new_event_loop()
        deadline = loop.time() + float(duration)
        loop.run_until_complete(
            load(json.loads(ports), int(conns), int(churners), int(tls_every), deadline)
        )
        loop.close()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--conns", type=int, default=10_000, help="connections held open")
    parser.add_argument("--churners", type=int, default=8,
                        help="workers doing connect, echo, close in a loop")
    parser.add_argument("--tls-every", type=int, default=5,
                        help="every Nth churned connection uses TLS")
    parser.add_argument("--warmup", type=float, default=120, help="seconds before the bounds apply")
    parser.add_argument("--python", default=sys.executable, help="interpreter with uvloop (server)")
    parser.add_argument("--client-python", default=sys.executable)
    parser.add_argument("--out", default=os.path.join(HERE, "results"))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
