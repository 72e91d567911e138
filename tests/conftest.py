"""Offline test harness.

* ``ZOO_CACHE`` (generated datasets) points to a temp dir shared by the session.
* Every test runs with ``HF_HUB_OFFLINE=1``, ``HF_HUB_DISABLE_XET=1`` and its own ``HF_HOME`` in a temp dir
  (hub constants are read at import time, so the session-wide values are set here, before anything imports
  ``huggingface_hub``, and the per-test ones are patched into ``huggingface_hub.constants``).
* A guard fails any test that opens a network connection to anything but loopback (tests that talk to the
  loopback test hub are fine). The attempted connection is refused before any packet leaves.
* Markers ``gpu`` and ``pytorch3d`` skip cleanly where the hardware / package is absent; ``slow`` tests are
  deselected by default (``pytest -m slow`` runs them).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import socket
import tempfile

import pytest
import torch

_SESSION_HF_HOME = tempfile.mkdtemp(prefix="zoo-hf-home-")
os.environ.update(
    {
        "HF_HOME": _SESSION_HF_HOME,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
        # generated datasets (SynthVSI, procedural shapes) are cached once per test session, never in ~/.cache
        "ZOO_CACHE": tempfile.mkdtemp(prefix="zoo-cache-"),
    }
)
os.environ.pop("HF_TOKEN", None)


class NetworkAccessError(OSError):
    """Raised instead of opening a connection to a non-loopback address during tests."""


def _is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


_attempts: list[str] = []
_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex
_real_getaddrinfo = socket.getaddrinfo


def _check(sock: socket.socket, address) -> None:
    if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(str(address[0])):
        _attempts.append(repr(address))
        raise NetworkAccessError(f"tests may only connect to loopback; refused {address!r}")


def _guarded_connect(self, address):
    _check(self, address)
    return _real_connect(self, address)


def _guarded_connect_ex(self, address):
    _check(self, address)
    return _real_connect_ex(self, address)


def _guarded_getaddrinfo(host, *args, **kwargs):
    if host is not None and not _is_loopback(host if isinstance(host, str) else host.decode()):
        _attempts.append(f"getaddrinfo({host!r})")
        raise NetworkAccessError(f"tests may only resolve loopback names; refused {host!r}")
    return _real_getaddrinfo(host, *args, **kwargs)


socket.socket.connect = _guarded_connect
socket.socket.connect_ex = _guarded_connect_ex
socket.getaddrinfo = _guarded_getaddrinfo


@pytest.fixture(autouse=True)
def _one_thread():
    """One intra-op thread: tiny models gain nothing from more, and oversubscribed CPUs slow them ~25x."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _offline_hub(tmp_path_factory, monkeypatch):
    """A fresh HF_HOME/cache per test, offline; and fail the test if it tried to reach the network."""
    home = tmp_path_factory.mktemp("hf-home")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_CACHE", str(home / "hub"))
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a core dependency
        constants = None
    if constants is not None:
        monkeypatch.setattr(constants, "HF_HOME", str(home))
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = len(_attempts)
    yield
    if len(_attempts) > start:
        pytest.fail(f"test tried to reach the network: {_attempts[start:]}", pytrace=False)


def _pytorch3d_available() -> bool:
    if importlib.util.find_spec("pytorch3d") is None:
        return False
    try:
        from pytorch3d import _C  # noqa: F401  (the compiled extension)
    except ImportError:
        return False
    return True


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    skip_p3d = pytest.mark.skip(reason="needs pytorch3d with its compiled extension (not installable from PyPI)")
    has_gpu = torch.cuda.is_available()
    has_p3d = _pytorch3d_available()
    for item in items:
        if "gpu" in item.keywords and not has_gpu:
            item.add_marker(skip_gpu)
        if "pytorch3d" in item.keywords and not has_p3d:
            item.add_marker(skip_p3d)
