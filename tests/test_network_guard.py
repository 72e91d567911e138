"""The harness refuses non-loopback connections (before any packet is sent) and allows loopback."""

from __future__ import annotations

import socket
import threading

import conftest
import pytest


def _forget_attempts(start: int) -> None:
    del conftest._attempts[start:]


def test_guard_is_installed():
    assert socket.socket.connect is conftest._guarded_connect
    assert socket.getaddrinfo is conftest._guarded_getaddrinfo


@pytest.mark.parametrize("address", [("192.0.2.1", 80), ("8.8.8.8", 53)])
def test_non_loopback_connect_is_refused_and_recorded(address):
    assert socket.socket.connect is conftest._guarded_connect  # so nothing below can leave the machine
    start = len(conftest._attempts)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, pytest.raises(conftest.NetworkAccessError):
        sock.connect(address)
    assert conftest._attempts[start:] == [repr(address)]
    _forget_attempts(start)


def test_hostname_resolution_is_refused():
    start = len(conftest._attempts)
    with pytest.raises(conftest.NetworkAccessError):
        socket.create_connection(("huggingface.co", 443), timeout=1)
    assert len(conftest._attempts) == start + 1
    _forget_attempts(start)


def test_loopback_is_allowed():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    thread = threading.Thread(target=lambda: server.accept()[0].sendall(b"ok"))
    thread.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
        assert client.recv(2) == b"ok"
    thread.join()
    server.close()


def test_hub_offline_and_private_home(tmp_path):
    import os

    from huggingface_hub import constants

    assert constants.HF_HUB_OFFLINE is True
    assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["HF_HUB_DISABLE_XET"] == "1"
    assert "hf-home" in constants.HF_HUB_CACHE
