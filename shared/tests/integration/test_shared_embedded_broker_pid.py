"""The embedded broker's process id, for tests that signal it (freeze, resume)."""

from __future__ import annotations

import os
import signal

import pytest

from clientela.shared.embedded_broker import EmbeddedBroker


def test_the_pid_is_the_running_broker_process() -> None:
    broker = EmbeddedBroker(prefer_port=0)
    with pytest.raises(RuntimeError):
        _ = broker.pid
    with broker:
        pid = broker.pid
        os.kill(pid, signal.SIGSTOP)  # frozen, then thawed: the broker lives on
        os.kill(pid, signal.SIGCONT)
        assert broker.running
    with pytest.raises(RuntimeError):
        _ = broker.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
