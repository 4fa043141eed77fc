"""Benchmark: touchpoints/s accepted over HTTP against a bare Kafka producer, in one run.

`python -m clientela.ingest.bench --output .bench/bench-ingest.json [--duration 20]` starts a
broker (unless --bootstrap is given), measures a bare confluent-kafka producer writing the same
events, starts the ingest service as its own process (several uvicorn workers with a Redis
dedup store when one answers), and posts 100-event batches over keep-alive HTTP connections
from a separate client process for a bounded time. Every request carries fresh event ids, a
key, and waits for the broker's acks like any client; the answer's `accepted` count is what
is counted. It prints a table and writes one flat JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Any, cast

import redis
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from clientela.shared.codec import HEADER_EVENT_ID, header
from clientela.shared.confluent import producer_config
from clientela.shared.contracts import TouchpointRecorded, topics
from clientela.shared.embedded_broker import EmbeddedBroker, free_port
from clientela.shared.kafka import ensure_topics
from clientela.shared.settings import KafkaSettings

RUN_MARK = b"@RUN@"
WRITE_KEY = "bench-write-key"


# ---------------------------------------------------------------------------------------------
# The workload: a realistic mix of kinds; the same people come back, ids never repeat.


def _event(index: int, rng: random.Random) -> dict[str, Any]:
    person = rng.randrange(5_000)
    roll = rng.random()
    event: dict[str, Any] = {
        "event_id": f"bench-{RUN_MARK.decode()}-{index}",
        "occurred_at": "2025-03-01T09:30:00+01:00",
        "direction": "inbound",
    }
    if roll < 0.55:
        event |= {
            "kind": "web_visit",
            "channel": "web",
            "identifiers": {"anonymous_id": f"anon-{person}"},
            "web_visit": {"url": f"https://shop.example.com/p/{person % 300}", "page_views": 3},
        }
    elif roll < 0.8:
        event |= {
            "kind": "sale",
            "channel": "web",
            "identifiers": {"email": f" Customer{person}@Example.com", "customer_id": f"c{person}"},
            "sale": {
                "order_id": f"o-{index}",
                "amount": "120.50",
                "currency": "eur",
                "items": [{"sku": f"sku-{person % 50}", "quantity": 2, "unit_price": "60.25"}],
            },
        }
    elif roll < 0.95:
        event |= {
            "kind": "phone_call",
            "channel": "phone",
            "identifiers": {"phone": f"+1 202 555 {person % 10_000:04d}"},
            "call": {"duration_seconds": 180, "outcome": "resolved"},
            "agent": {"agent_id": f"rep-{person % 40}", "role": "call_agent"},
        }
    else:
        event |= {
            "kind": "email",
            "channel": "email",
            "direction": "outbound",
            "identifiers": {"email": f"customer{person}@example.com"},
            "email": {"opened": True, "subject": "Spring offers"},
        }
    return event


def batch_template(batch_size: int, seed: int = 7) -> bytes:
    """Return a native {"batch": [...]} body whose event ids hold a run marker to replace."""
    rng = random.Random(seed)
    return json.dumps({"batch": [_event(i, rng) for i in range(batch_size)]}).encode()


def sample_values(count: int) -> list[bytes]:
    """Return encoded TouchpointRecorded values of the workload (the baseline's records)."""
    rng = random.Random(11)
    out = []
    for i in range(count):
        event = _event(i, rng)
        event["identifiers"] = {
            k: v.strip().lower() if k == "email" else v for k, v in event["identifiers"].items()
        }
        if "phone" in event["identifiers"]:
            event["identifiers"]["phone"] = "+12025550143"
        if "sale" in event:
            event["sale"]["currency"] = "EUR"
        fields = {k: event.pop(k) for k in ("event_id", "occurred_at")}
        recorded = TouchpointRecorded.model_validate({**fields, "source": "bench", "data": event})
        out.append(recorded.__pydantic_serializer__.to_json(recorded))
    return out


# ---------------------------------------------------------------------------------------------
# Baseline: a bare producer, acks=all, same records, same broker.


def measure_producer(kafka: KafkaSettings, topic: str, seconds: float) -> dict[str, float]:
    """Produce as fast as possible for `seconds`; return acknowledged records per second."""
    producer = Producer(producer_config(kafka))
    values = sample_values(500)
    delivered = 0
    failed = 0

    def on_delivery(error: object, _message: object) -> None:
        nonlocal delivered, failed
        if error is None:
            delivered += 1
        else:
            failed += 1

    started = time.perf_counter()
    deadline = started + seconds
    sent = 0
    while time.perf_counter() < deadline:
        for value in values:
            while True:
                try:
                    producer.produce(topic, value, f"k{sent % 4096}", on_delivery=on_delivery)
                    break
                except BufferError:
                    producer.poll(0.01)
            sent += 1
        producer.poll(0)
    producer.flush(30)
    elapsed = time.perf_counter() - started
    return {"baseline_events_per_s": delivered / elapsed, "baseline_failed": failed}


# ---------------------------------------------------------------------------------------------
# The HTTP client: raw keep-alive HTTP/1.1 so that the client costs little CPU.


async def _connection(
    port: int,
    template: bytes,
    worker: int,
    deadline: float,
    warmup_until: float,
    latencies: list[float],
    totals: dict[str, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = (
        "POST /v1/touchpoints HTTP/1.1\r\nHost: ingest\r\n"
        f"Authorization: Bearer {WRITE_KEY}\r\nContent-Type: application/json\r\n"
    ).encode()
    sequence = 0
    try:
        while (now := time.perf_counter()) < deadline:
            sequence += 1
            body = template.replace(RUN_MARK, f"{worker}x{sequence}x{os.getpid()}".encode())
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status_line = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            answer = await reader.readexactly(length)
            elapsed = time.perf_counter() - now
            start = answer.find(b'"accepted":') + 11
            accepted = int(answer[start : answer.find(b",", start)]) if start > 10 else 0
            totals["accepted_total"] += accepted
            if now < warmup_until:
                continue
            code = int(status_line.split()[1])
            totals["requests"] += 1
            if code == 200:
                latencies.append(elapsed)
                totals["accepted"] += accepted
            else:
                totals["errors"] += 1
                totals[f"status_{code}"] = totals.get(f"status_{code}", 0) + 1
    finally:
        writer.close()


async def _client(
    port: int, connections: int, batch: int, seconds: float, warmup: float
) -> dict[str, Any]:
    template = batch_template(batch)
    latencies: list[float] = []
    totals = {"requests": 0, "accepted": 0, "accepted_total": 0, "errors": 0}
    started = time.perf_counter()
    warmup_until = started + warmup
    deadline = warmup_until + seconds
    await asyncio.gather(
        *(
            _connection(port, template, n, deadline, warmup_until, latencies, totals)
            for n in range(connections)
        )
    )
    measured = time.perf_counter() - warmup_until
    latencies.sort()

    def pct(q: float) -> float:
        return (
            latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else 0
        )

    return {
        **totals,
        "measured_s": measured,
        "events_per_s": totals["accepted"] / measured,
        "requests_per_s": totals["requests"] / measured,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else 0,
    }


def client_main(args: argparse.Namespace) -> None:
    """Run the HTTP client (in its own process) and print its figures as JSON."""
    result = asyncio.run(
        _client(args.port, args.connections, args.batch, args.duration, args.warmup)
    )
    print(json.dumps(result))


# ---------------------------------------------------------------------------------------------
# Orchestration.


def _answers(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


@contextmanager
def _broker(bootstrap: str | None) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    with EmbeddedBroker(port=free_port()) as broker:
        yield broker.bootstrap_servers


@contextmanager
def _private_redis() -> Iterator[str | None]:
    """Start a Redis of the run's own (no persistence), so its CPU is the service's alone."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the private redis-server did not start")
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def _redis_cpu(url: str) -> float:
    """Return the CPU seconds the Redis server has spent so far (0 without Redis)."""
    if not url.startswith(("redis://", "rediss://")):
        return 0.0
    client = redis.Redis.from_url(url)
    try:
        info = client.info("cpu")
    finally:
        client.close()
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@contextmanager
def _server(
    env: dict[str, str], port: int, timeout_s: float = 60
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "clientela.ingest", "serve"],
        env={**os.environ, **env},
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"ingest exited with {process.returncode} while starting")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("ingest did not become ready")
            time.sleep(0.2)
        yield process
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _cpu_seconds(root: int) -> float:
    """Return user+system CPU seconds of a process and all its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    ticks = os.sysconf("SC_CLK_TCK")
    usage: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        children.setdefault(int(fields[1]), []).append(pid)
        usage[pid] = (int(fields[11]) + int(fields[12])) / ticks
    total, stack = 0.0, [root]
    while stack:
        pid = stack.pop()
        total += usage.get(pid, 0.0)
        stack.extend(children.get(pid, []))
    return total


def _broker_cpu(server_pid: int) -> float:
    """Return the CPU seconds of this process's other children but Redis (the embedded broker)."""
    me = os.getpid()
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == server_pid:
            continue
        if _is_redis(entry):
            continue
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if parent == me:
            total += _process_cpu(int(entry.name))
    return total


def _is_redis(entry: Path) -> bool:
    try:
        return b"redis-server" in (entry / "cmdline").read_bytes()
    except OSError:
        return False


def _machine_busy() -> tuple[float, float]:
    """Return (busy, total) CPU jiffies of the whole machine so far (Linux /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def _process_cpu(pid: int) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / ticks


def topic_records(bootstrap: str, topic: str, partitions: int) -> int:
    """Return how many distinct event ids the topic holds, by reading it from the start.

    Counting by reading rather than by watermarks: the embedded broker's watermarks count
    produce batches, not records.
    """
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-{uuid.uuid4()}",
            "enable.auto.commit": False,
        }
    )
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)])
        ids: set[bytes] = set()
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            batch = consumer.consume(10_000, timeout=0.5)
            if batch:
                for message in batch:
                    headers = cast(list[tuple[str, bytes]], message.headers() or [])
                    event_id = header(headers, HEADER_EVENT_ID)
                    if message.error() is None and event_id is not None:
                        ids.add(event_id)
                idle_since = time.monotonic()
        return len(ids)
    finally:
        consumer.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the whole benchmark and return its flat result."""
    run_id = uuid.uuid4().hex[:8]
    workers = args.workers
    with ExitStack() as stack:
        cache_url = args.cache_url
        if cache_url is None:
            # A Redis of its own when redis-server is installed, so its CPU is ours alone.
            cache_url = stack.enter_context(_private_redis())
        if cache_url is None:
            redis_up = _answers("127.0.0.1", 6379)
            cache_url = "redis://127.0.0.1:6379/0" if redis_up else "memory://"
        if workers > 1 and cache_url.startswith("memory://"):
            print("no Redis answers: one worker with the in-process dedup store", file=sys.stderr)
            workers = 1
        bootstrap = stack.enter_context(_broker(args.bootstrap))
        kafka = KafkaSettings(bootstrap_servers=bootstrap, topic_prefix=f"bench{run_id}.")
        topic = kafka.topic(topics.TOUCHPOINTS)
        port = free_port()
        env = {
            "CLIENTELA_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            "CLIENTELA_KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
            "CLIENTELA_CACHE_URL": cache_url,
            "CLIENTELA_CACHE_KEY_PREFIX": f"bench{run_id}:",
            "CLIENTELA_DEV_WRITE_KEY": WRITE_KEY,
            "INGEST_HTTP_PORT": str(port),
            "INGEST_WORKERS": str(workers),
            "INGEST_LOG_LEVEL": "WARNING",
            # The limiter stays on the path, set far above what one machine can send.
            "INGEST_RATE_LIMIT_EVENTS_PER_S": "1000000000",
            "INGEST_RATE_LIMIT_BURST": "1000000000",
        }
        with _server(env, port) as server:
            # The baseline writes the same records to a topic of the same shape, its own.
            baseline_kafka = kafka.model_copy(update={"topic_prefix": f"{kafka.topic_prefix}base."})
            asyncio.run(ensure_topics(baseline_kafka, [topics.TOUCHPOINTS]))
            baseline = measure_producer(
                baseline_kafka, baseline_kafka.topic(topics.TOUCHPOINTS), args.baseline_duration
            )
            # What the idle service burns (pollers, timers) weighs on every event at low rates.
            idle_before, idle_started = _cpu_seconds(server.pid), time.perf_counter()
            time.sleep(args.idle)
            idle_cpu_s = _cpu_seconds(server.pid) - idle_before
            idle_s = time.perf_counter() - idle_started
            cpu_before = _cpu_seconds(server.pid)
            broker_before = _broker_cpu(server.pid)
            redis_before = _redis_cpu(cache_url)
            busy_before = _machine_busy()
            children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
            client = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "clientela.ingest.bench",
                    "--client",
                    "--port",
                    str(port),
                    "--connections",
                    str(args.connections),
                    "--batch",
                    str(args.batch),
                    "--duration",
                    str(args.duration),
                    "--warmup",
                    str(args.warmup),
                ],
                capture_output=True,
                check=True,
                timeout=args.duration + args.warmup + 120,
            )
            http = json.loads(client.stdout)
            server_cpu_s = _cpu_seconds(server.pid) - cpu_before
            broker_cpu_s = _broker_cpu(server.pid) - broker_before
            redis_cpu_s = _redis_cpu(cache_url) - redis_before
            busy_after = _machine_busy()
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        stored = topic_records(bootstrap, topic, topics.TOUCHPOINTS.partitions)
    client_cpu_s = (children_after.ru_utime + children_after.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    busy_share = (busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1])
    ratio = http["events_per_s"] / baseline["baseline_events_per_s"]
    return {
        "events_per_s": round(http["events_per_s"], 1),
        "requests_per_s": round(http["requests_per_s"], 1),
        "p50_ms": round(http["p50_ms"], 2),
        "p99_ms": round(http["p99_ms"], 2),
        "mean_ms": round(http["mean_ms"], 2),
        "baseline_events_per_s": round(baseline["baseline_events_per_s"], 1),
        # CPU the service spent per accepted event (warm-up included in both counts): robust
        # to other load on the machine, unlike events/s.
        "server_cpu_us_per_event": round(server_cpu_s / max(1, http["accepted_total"]) * 1e6, 2),
        "client_cpu_us_per_event": round(client_cpu_s / max(1, http["accepted_total"]) * 1e6, 2),
        "broker_cpu_us_per_event": round(broker_cpu_s / max(1, http["accepted_total"]) * 1e6, 2),
        # The Redis server's own CPU (dedup and rate limit scripts); exact with a private Redis.
        "redis_cpu_us_per_event": round(redis_cpu_s / max(1, http["accepted_total"]) * 1e6, 2),
        "server_idle_cpu_pct": round(idle_cpu_s / max(1e-9, idle_s) * 100, 2),
        # Share of the machine's CPU in use during the HTTP phase, by anything at all.
        "machine_busy_pct": round(busy_share * 100, 1),
        "ratio": round(ratio, 3),
        "target_events_per_s": 100_000,
        "events_accepted": http["accepted"],
        "events_accepted_with_warmup": http["accepted_total"],
        "events_on_topic": stored,
        "requests": http["requests"],
        "request_errors": http["errors"],
        "batch_events": args.batch,
        "connections": args.connections,
        "workers": workers,
        "duration_s": round(http["measured_s"], 2),
        "baseline_duration_s": args.baseline_duration,
        "dedup_store": cache_url.split(":", 1)[0],
        "cpus": os.cpu_count() or 0,
        "python": platform.python_version(),
    }


def print_table(result: dict[str, Any]) -> None:
    """Print the result as a readable table."""
    rows = [
        ("HTTP ingest", f"{result['events_per_s']:>12,.0f} events/s"),
        ("  requests", f"{result['requests_per_s']:>12,.0f} req/s of {result['batch_events']}"),
        ("  latency p50 / p99", f"{result['p50_ms']:>8.2f} / {result['p99_ms']:.2f} ms"),
        ("bare producer", f"{result['baseline_events_per_s']:>12,.0f} events/s"),
        ("ratio", f"{result['ratio']:>12.3f}"),
        (
            "CPU service / redis / broker / client",
            f"{result['server_cpu_us_per_event']:>8.2f} / {result['redis_cpu_us_per_event']:.2f}"
            f" / {result['broker_cpu_us_per_event']:.2f}"
            f" / {result['client_cpu_us_per_event']:.2f} us/event",
        ),
        ("service idle", f"{result['server_idle_cpu_pct']:>11.2f} % of a core"),
        ("machine busy", f"{result['machine_busy_pct']:>11.1f} %"),
        (
            "accepted (incl. warm-up) / on topic",
            f"{result['events_accepted_with_warmup']:>12,} / {result['events_on_topic']:,}",
        ),
        ("errors", f"{result['request_errors']:>12,}"),
        (
            "setup",
            f"{result['workers']} worker(s), {result['connections']} connections, "
            f"dedup {result['dedup_store']}, {result['duration_s']} s",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value}")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark (or, internally, its client)."""
    parser = argparse.ArgumentParser(prog="clientela.ingest.bench", description=__doc__)
    parser.add_argument("--output", type=Path, help="write the JSON result here")
    parser.add_argument("--duration", type=float, default=20.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0, help="unmeasured seconds first")
    parser.add_argument("--baseline-duration", type=float, default=5.0)
    parser.add_argument("--idle", type=float, default=3.0, help="idle seconds measured first")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--batch", type=int, default=100, help="events per request")
    parser.add_argument("--bootstrap", help="use this broker instead of an embedded one")
    parser.add_argument(
        "--cache-url",
        help="dedup store (default: a private redis-server if installed, else local Redis if it "
        "answers, else in-process)",
    )
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        client_main(args)
        return
    result = run(args)
    print_table(result)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
