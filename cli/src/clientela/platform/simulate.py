"""Live traffic for a running platform: the synthetic population, or a replay, into ingest."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from tqdm import tqdm

from clientela.platform.client import CliError, api_key, service_url
from clientela.shared.consumer import partition_ends
from clientela.shared.contracts import TouchpointRecorded
from clientela.shared.settings import KafkaSettings


async def post_stream(
    events: Iterable[dict[str, Any]],
    total: int,
    *,
    rate: float = 0.0,
    batch: int = 100,
    concurrency: int = 4,
    progress: bool = True,
) -> dict[str, int]:
    """Post native touchpoints to ingest in batches at a rate (0 = as fast as accepted)."""
    url = service_url("ingest") + "/v1/touchpoints"
    headers = {"Authorization": f"Bearer {api_key('write')}"}
    counts = {"accepted": 0, "duplicates": 0, "rejected": 0}
    semaphore = asyncio.Semaphore(concurrency)
    bar = tqdm(total=total, unit="ev", disable=not progress)
    started = time.perf_counter()

    async def post(client: httpx.AsyncClient, chunk: Sequence[dict[str, Any]]) -> None:
        async with semaphore:
            try:
                response = await client.post(url, json=list(chunk), headers=headers)
            except httpx.HTTPError as exc:
                raise CliError(f"ingest is unreachable at {url}: {exc}", 5) from exc
            if response.status_code in (401, 403):
                raise CliError("ingest refused the write key; set CLIENTELA_WRITE_KEY", 4)
            if response.status_code not in (200, 422):
                raise CliError(f"ingest answered {response.status_code}: {response.text}")
            body = response.json()
            for key in counts:
                counts[key] += int(body.get(key, 0))
            bar.update(len(chunk))

    async with httpx.AsyncClient(timeout=60) as client:
        tasks: list[asyncio.Task[None]] = []
        chunk: list[dict[str, Any]] = []
        sent = 0
        for event in events:
            chunk.append(event)
            if len(chunk) == batch:
                tasks.append(asyncio.create_task(post(client, chunk)))
                sent += len(chunk)
                chunk = []
                if rate > 0:
                    await asyncio.sleep(max(0.0, started + sent / rate - time.perf_counter()))
        if chunk:
            tasks.append(asyncio.create_task(post(client, chunk)))
        await asyncio.gather(*tasks)
    bar.close()
    return counts


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Read native touchpoints, one JSON object per line (blank lines skipped)."""
    events = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            try:
                events.append(json.loads(line))
            except ValueError as exc:
                raise CliError(f"{path}:{number}: not JSON: {exc}", 2) from exc
    return events


def to_native(event: TouchpointRecorded) -> dict[str, Any]:
    """Turn a recorded touchpoint back into the native form ingest accepts."""
    native: dict[str, Any] = event.data.model_dump(mode="json", exclude_none=True)
    native.update(
        event_id=event.event_id, occurred_at=event.occurred_at.isoformat(), source=event.source
    )
    if event.correlation_id:
        native["correlation_id"] = event.correlation_id
    return native


async def read_topic_range(
    settings: KafkaSettings, topic: str, partition: int, start: int, end: int | None
) -> list[dict[str, Any]]:
    """Read recorded touchpoints from one partition's offset range as native events."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, enable_auto_commit=False
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        last = (await partition_ends(consumer, [tp]))[tp]
        consumer.assign([tp])
        stop = min(last, end) if end is not None else last
        consumer.seek(tp, start)
        events: list[dict[str, Any]] = []
        while start < stop:
            batch = await consumer.getmany(tp, timeout_ms=1000)
            if not batch:
                break
            for record in batch.get(tp, []):
                if record.offset >= stop:
                    break
                if record.value is not None:
                    events.append(to_native(TouchpointRecorded.model_validate_json(record.value)))
                start = record.offset + 1
        return events
    finally:
        await consumer.stop()
