"""The benchmark's profile lookups, in a process of their own.

In the benchmark's process the observer's and the load generator's turns of the event loop
would count as the profile service's latency. Reads the read key (first line) and the customer
ids (a JSON array on the second) from stdin, looks profiles up at the given rate until stdin
closes, then writes {"latencies_ms": [...], "misses": n} to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time

import httpx


async def look_up(base: str, key: str, customer_ids: list[str], rate: float) -> dict[str, object]:
    """Look profiles up at `rate` per second until stdin closes; return the latencies."""
    loop = asyncio.get_running_loop()
    closed = loop.run_in_executor(None, sys.stdin.buffer.read)
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {key}"}
    latencies: list[float] = []
    misses = 0
    async with httpx.AsyncClient(timeout=10) as client:
        while not closed.done():
            began = time.perf_counter()
            try:
                response = await client.get(base + rng.choice(customer_ids), headers=headers)
            except httpx.HTTPError:
                misses += 1
                await asyncio.sleep(1 / rate)
                continue
            elapsed = (time.perf_counter() - began) * 1000
            if response.status_code == 200:
                latencies.append(elapsed)
            else:
                misses += 1
            await asyncio.sleep(max(0.0, 1 / rate - elapsed / 1000))
    return {"latencies_ms": latencies, "misses": misses}


def main() -> None:
    """Run the lookups with the key and the ids read from stdin."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True, help="URL the customer id is appended to")
    parser.add_argument("--rate", type=float, required=True)
    args = parser.parse_args()
    key = sys.stdin.buffer.readline().decode().strip()
    customer_ids = json.loads(sys.stdin.buffer.readline())
    result = asyncio.run(look_up(args.base, key, customer_ids, args.rate))
    sys.stdout.write(json.dumps(result))


if __name__ == "__main__":
    main()
