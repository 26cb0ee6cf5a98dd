#!/usr/bin/env python3
"""RSS per idle client: open N authenticated, idle PostgreSQL connections to a proxy and
measure the proxy's VmRSS (from /proc/<pid>/status) before and after.

Raw protocol 3.0 startup packets over asyncio (no driver needed); trust, cleartext and md5
authentication are answered. Prints one JSON line:
{"clients": N, "failed": F, "rss_before_kib": A, "rss_after_kib": B, "kib_per_client": X}

Usage: idle_rss.py --port P --pid PID [--host 127.0.0.1] [--user postgres] [--db bench]
                   [--password PW] [--clients 5000] [--concurrency 200]
"""

import argparse
import asyncio
import hashlib
import json
import resource
import struct
import sys
import time


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def read_msg(reader):
    head = await reader.readexactly(5)
    kind, length = head[:1], struct.unpack("!I", head[1:])[0]
    body = await reader.readexactly(length - 4)
    return kind, body


def msg(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


async def connect(args):
    reader, writer = await asyncio.open_connection(args.host, args.port)
    params = b"user\0" + args.user.encode() + b"\0database\0" + args.db.encode() + b"\0\0"
    body = struct.pack("!I", 196608) + params
    writer.write(struct.pack("!I", len(body) + 4) + body)
    await writer.drain()
    while True:
        kind, body = await read_msg(reader)
        if kind == b"R":
            code = struct.unpack("!I", body[:4])[0]
            if code == 3:
                writer.write(msg(b"p", args.password.encode() + b"\0"))
            elif code == 5:
                inner = hashlib.md5((args.password + args.user).encode()).hexdigest()
                outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                writer.write(msg(b"p", b"md5" + outer.encode() + b"\0"))
            elif code != 0:
                raise RuntimeError(f"unsupported authentication request {code}")
            await writer.drain()
        elif kind == b"E":
            raise RuntimeError(body.decode(errors="replace"))
        elif kind == b"Z":
            return reader, writer


async def main():
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--user", default="postgres")
    p.add_argument("--db", default="bench")
    p.add_argument("--password", default="")
    p.add_argument("--clients", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=200)
    args = p.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.clients + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    # One connection first, so the pool, its server connection and the runtime are warm.
    first = await connect(args)
    await asyncio.sleep(1.0)
    before = rss_kib(args.pid)

    conns, failed = [], 0
    sem = asyncio.Semaphore(args.concurrency)

    async def one():
        nonlocal failed
        async with sem:
            try:
                conns.append(await asyncio.wait_for(connect(args), 15))
            except Exception as e:  # noqa: BLE001 - counted and reported
                failed += 1
                if failed <= 3:
                    print(f"connect failed: {e!r}", file=sys.stderr)

    t0 = time.monotonic()
    await asyncio.gather(*(one() for _ in range(args.clients)))
    opened = time.monotonic() - t0
    await asyncio.sleep(2.0)
    after = rss_kib(args.pid)
    n = len(conns)
    print(json.dumps({
        "clients": n,
        "failed": failed,
        "open_secs": round(opened, 2),
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_client": round((after - before) / n, 2) if n else None,
    }))
    for _, w in conns + [first]:
        w.close()


if __name__ == "__main__":
    asyncio.run(main())
