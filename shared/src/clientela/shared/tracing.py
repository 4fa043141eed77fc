"""Trace context (W3C `traceparent`/`tracestate`) carried from record to record.

Every record a service derives from a consumed record carries the consumed record's trace
context, so one touchpoint can be followed from ingest to campaign by its trace id. This
works with the OpenTelemetry API alone: nothing is recorded, the context is passed on. When
OTEL_EXPORTER_OTLP_ENDPOINT is set and the `otlp` extra of clientela-shared is installed,
`configure` installs the SDK: consumers then record one span per processed record (a child of
the record's context), HTTP requests one server span, and the records they derive carry those
spans' contexts. The configured propagator (OTEL_PROPAGATORS, W3C trace context and baggage
by default) reads and writes the headers.

How a derived record finds its cause's context: `BatchTrace` (used by the shared
BatchProcessor) holds the context of every event of the batch being handled, by event id, and
`derived` looks the derived event's `causation_id` up there; an explicit `TraceContext`
(e.g. kept with deferred work) wins over the lookup. Inside an HTTP request the request's
context applies.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, Self

import msgspec
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    Link,
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
)

log = logging.getLogger(__name__)

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
OTLP_ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"

Headers = list[tuple[str, bytes]]


def _tracer() -> trace.Tracer:
    # Looked up on use: the provider may be installed after this module is imported.
    return trace.get_tracer("clientela")


class _HeaderListGetter(Getter[Sequence[tuple[str, bytes]]]):
    """Reads propagation fields from Kafka's (name, bytes) header list."""

    def get(self, carrier: Sequence[tuple[str, bytes]], key: str) -> list[str] | None:
        found = [v.decode("latin-1") for k, v in carrier if k == key and v is not None]
        return found or None

    def keys(self, carrier: Sequence[tuple[str, bytes]]) -> list[str]:
        return [k for k, _ in carrier]


_getter = _HeaderListGetter()


class TraceContext(msgspec.Struct, frozen=True, gc=False):
    """A trace context as its propagation fields (`traceparent`, `tracestate`, ...)."""

    # A Struct: one is built per consumed record, at a quarter of a frozen dataclass's cost.
    # Untracked by the collector: it holds strings only.
    fields: tuple[tuple[str, str], ...]

    @classmethod
    def of(cls, context: otel_context.Context) -> TraceContext | None:
        """Return the propagation fields of a context, or None when it holds no valid span."""
        if not trace.get_current_span(context).get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=context)
        return cls(tuple(sorted(carrier.items()))) if carrier else None

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes]] | None) -> TraceContext | None:
        """Return the valid trace context carried in Kafka headers, if any."""
        if not headers:
            return None
        if _w3c_only():
            copied, found = _copied(headers)
            if copied:
                return found
        return cls.of(propagate.extract(headers, getter=_getter))

    @classmethod
    def from_mapping(cls, carrier: Mapping[str, str] | None) -> TraceContext | None:
        """Return the valid trace context in a mapping (HTTP headers, stored JSON), if any."""
        if not carrier:
            return None
        return cls.of(propagate.extract(carrier))

    @classmethod
    def new(cls) -> TraceContext:
        """Start a new trace (sampled, so services that record spans record this one)."""
        span = NonRecordingSpan(_new_span_context())
        found = cls.of(trace.set_span_in_context(span))
        assert found is not None  # a fresh span context is always valid
        return found

    def context(self) -> otel_context.Context:
        """Return the OpenTelemetry context these fields describe."""
        return propagate.extract(dict(self.fields))

    def span_context(self) -> SpanContext:
        """Return the span context these fields describe."""
        return trace.get_current_span(self.context()).get_span_context()

    @property
    def trace_id(self) -> str:
        """Return the trace id as 32 hex digits."""
        return f"{self.span_context().trace_id:032x}"

    def headers(self) -> Headers:
        """Return the fields as Kafka headers."""
        if len(self.fields) == 1:  # a lone traceparent, by far the most common
            ((name, value),) = self.fields
            return [(name, value.encode("latin-1"))]
        return [(k, v.encode("latin-1")) for k, v in self.fields]

    def as_dict(self) -> dict[str, str]:
        """Return the fields as a JSON-friendly mapping."""
        return dict(self.fields)


_W3C_FIELDS = frozenset({TRACEPARENT, TRACESTATE, "baggage"})
# Version 00 with non-zero ids; anything else goes through the propagator.
_TRACEPARENT_00 = re.compile(
    rb"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}", re.ASCII
)


def _copied(headers: Sequence[tuple[str, bytes]]) -> tuple[bool, TraceContext | None]:
    """Copy W3C fields as extract-then-inject would, at a fraction of the cost per record.

    Returns (False, None) for what only the propagator can judge (another version).
    """
    parent: bytes | None = None
    others: list[tuple[str, str]] | None = None
    for key, value in headers:
        if key == TRACEPARENT:
            parent = value
        elif key in _W3C_FIELDS and value:
            if others is None:
                others = []
            others.append((key, value.decode("latin-1")))
    if parent is None:
        return True, None
    if _TRACEPARENT_00.fullmatch(parent):
        field = (TRACEPARENT, parent.decode("latin-1"))
        if others is None:  # a lone traceparent: nothing to sort
            return True, TraceContext((field,))
        others.append(field)
        return True, TraceContext(tuple(sorted(others)))
    # A malformed version 00 is invalid for certain; a future version is the propagator's call.
    return parent.startswith(b"00-"), None


def _w3c_only() -> bool:
    # The default propagators (W3C trace context and baggage) pass fields on unchanged, so a
    # record's fields can be copied; other propagators (OTEL_PROPAGATORS=b3, ...) are used.
    return propagate.get_global_textmap().fields <= _W3C_FIELDS


def _new_span_context() -> SpanContext:
    # Ids only need to be unique, not secret; the SDK's own generator does the same.
    return SpanContext(
        trace_id=random.getrandbits(128) or 1,
        span_id=random.getrandbits(64) or 1,
        is_remote=False,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def recording() -> bool:
    """Return whether an OpenTelemetry SDK records spans in this process."""
    provider = trace.get_tracer_provider()
    return not isinstance(provider, trace.ProxyTracerProvider | trace.NoOpTracerProvider)


def configure(service_name: str) -> bool:
    """Install the SDK with an OTLP exporter when OTEL_EXPORTER_OTLP_ENDPOINT is set.

    Returns whether spans are now recorded. The SDK reads its other settings (OTEL_SERVICE_NAME,
    OTEL_TRACES_SAMPLER, OTEL_EXPORTER_OTLP_HEADERS, ...) from the environment itself.
    """
    if recording():
        return True
    if not os.environ.get(OTLP_ENDPOINT_ENV):
        return False
    try:
        # Optional (the `otlp` extra): looked up by name so the module loads without them.
        exporter = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "%s is set but the OpenTelemetry SDK is not installed (install clientela-shared"
            "[otlp]); trace context is carried but no span is recorded",
            OTLP_ENDPOINT_ENV,
        )
        return False
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter.OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    log.info("recording spans to %s", os.environ[OTLP_ENDPOINT_ENV])
    return True


# --- consumed batches ------------------------------------------------------------------------

_batch: ContextVar[Mapping[str, TraceContext] | None] = ContextVar("clientela_batch", default=None)


class BatchTrace:
    """The trace contexts of one consumed batch, by event id (one span per record if recording).

    Use `add` for each decoded record, then `with batch_trace:` around the handler: derived
    events staged inside find their cause's context by `causation_id` (see `derived`).
    """

    def __init__(self, consumer: str) -> None:
        self._consumer = consumer
        self._recording = recording()
        self._w3c = _w3c_only()
        self._tracer = _tracer()
        self._by_event: dict[str, TraceContext] = {}
        self._spans: list[Span] = []
        self._token: Any = None

    def add(
        self,
        event_id: str,
        topic: str,
        partition: int,
        offset: int,
        headers: Sequence[tuple[str, bytes]] | None,
    ) -> TraceContext | None:
        """Return the context an event is processed in: its record's, or its span's."""
        if not self._recording:
            copied, found = _copied(headers or ()) if self._w3c else (False, None)
            if not copied:
                found = TraceContext.from_headers(headers)
        else:
            parent = propagate.extract(headers or [], getter=_getter)
            span = self._tracer.start_span(
                f"process {topic}",
                context=parent,
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "kafka",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": topic,
                    "messaging.destination.partition.id": str(partition),
                    "messaging.kafka.offset": offset,
                    "messaging.consumer.group.name": self._consumer,
                    "messaging.message.id": event_id,
                },
            )
            self._spans.append(span)
            found = TraceContext.of(trace.set_span_in_context(span, parent))
        if found is not None:
            self._by_event[event_id] = found
        return found

    def __enter__(self) -> Self:
        self._token = _batch.set(self._by_event)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _batch.reset(self._token)
        for span in self._spans:
            if exc is not None:
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            span.end()
        self._spans.clear()


def derived(
    causation_id: str | None,
    *,
    topic: str = "",
    linked_causes: Sequence[str] = (),
) -> TraceContext | None:
    """Return the trace context for an event derived from `causation_id`.

    The cause's context when the cause is in the batch being handled, else the active context
    (an HTTP request's), else None. `linked_causes` are further events that contributed (one
    event coalescing several): when spans are recorded, a producer span child of the cause and
    linked to each of them is recorded, and its context is returned.
    """
    return Derivation().context(causation_id, topic=topic, linked_causes=linked_causes)


_UNSET: Any = object()
_NO_SCOPE: Mapping[str, TraceContext] = {}


class Derivation:
    """`derived` for one batch of events: the scope and the active context looked up once.

    Build one per batch of outgoing events, where the events are staged (inside the scope).
    """

    __slots__ = ("_active", "_active_headers", "_recording", "_scope")

    def __init__(self) -> None:
        self._scope = _batch.get() or _NO_SCOPE
        self._active: TraceContext | None = _UNSET
        self._recording: bool | None = None
        self._active_headers: Headers | None = None

    def context(
        self,
        causation_id: str | None,
        *,
        topic: str = "",
        linked_causes: Sequence[str] = (),
    ) -> TraceContext | None:
        """Return the trace context for an event derived from `causation_id` (see `derived`)."""
        cause = self._scope.get(causation_id) if causation_id else None
        if cause is None:
            cause = self._active_context()
        if cause is None or not linked_causes or not self._records_spans():
            return cause
        return _producer_span(cause, self._scope, topic, linked_causes)

    def headers(
        self, causation_id: str | None, topic: str, linked_causes: Sequence[str]
    ) -> Headers:
        """Return `context` as Kafka headers (the active context's are shared: not to modify)."""
        if linked_causes and self._records_spans():
            found = self.context(causation_id, topic=topic, linked_causes=linked_causes)
            return found.headers() if found is not None else []
        cause = self._scope.get(causation_id) if causation_id else None
        if cause is not None:
            return cause.headers()
        if self._active_headers is None:
            active = self._active_context()
            self._active_headers = active.headers() if active is not None else []
        return self._active_headers

    def _active_context(self) -> TraceContext | None:
        if self._active is _UNSET:
            self._active = TraceContext.of(otel_context.get_current())
        return self._active

    def _records_spans(self) -> bool:
        if self._recording is None:
            self._recording = recording()
        return self._recording


def _producer_span(
    cause: TraceContext,
    scope: Mapping[str, TraceContext],
    topic: str,
    linked_causes: Sequence[str],
) -> TraceContext | None:
    """Record a producer span child of the cause, linked to the further causes; its context."""
    links = [
        Link(found.span_context())
        for found in (scope.get(c) for c in linked_causes)
        if found is not None
    ]
    span = _tracer().start_span(
        f"create {topic}".strip(),
        context=cause.context(),
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={"messaging.system": "kafka", "messaging.destination.name": topic},
    )
    span.end()
    return TraceContext.of(trace.set_span_in_context(span))


def current() -> TraceContext:
    """Return the trace of the work in progress (an HTTP request's), or start a new one."""
    return TraceContext.of(otel_context.get_current()) or TraceContext.new()


# --- HTTP ------------------------------------------------------------------------------------

Scope = Mapping[str, Any]


@contextmanager
def request_context(scope: Scope, route: str | None = None) -> Iterator[Span | None]:
    """Run an HTTP request in its caller's trace (`traceparent`) or in a new one.

    When spans are recorded the request gets a server span (yielded; else None), named after
    `route` when given; the path itself is never recorded, as it may hold identifier values.
    """
    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}
    parent = propagate.extract(carrier)
    if not recording():
        if not trace.get_current_span(parent).get_span_context().is_valid:
            parent = trace.set_span_in_context(NonRecordingSpan(_new_span_context()), parent)
        token = otel_context.attach(parent)
        try:
            yield None
        finally:
            otel_context.detach(token)
        return
    method = str(scope.get("method", "GET"))
    with _tracer().start_as_current_span(
        f"{method} {route}" if route else method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"http.request.method": method, **({"http.route": route} if route else {})},
    ) as span:
        yield span


def finish_server_span(span: Span, method: str, route: str | None, status_code: int) -> None:
    """Name a request's server span by its route template and record its status."""
    if route:
        span.update_name(f"{method} {route}")
        span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status_code)
    if status_code >= 500:
        span.set_status(Status(StatusCode.ERROR))
