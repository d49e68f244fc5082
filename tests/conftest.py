"""Shared test set-up: no network, one thread, the tiny profile, nothing written into the repository's data/, and no
dataset fingerprints."""

from __future__ import annotations

import os
import socket

import pytest
import torch

os.environ.setdefault("COURSE_PROFILE", "tiny")
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A unit test that reaches past loopback fails loudly instead of hanging in a classroom."""
    real_connect = socket.socket.connect

    def guarded_connect(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and (host.startswith("127.") or host in ("localhost", "::1") or host.startswith("/")):
            return real_connect(sock, address)
        raise RuntimeError(f"unit tests must not touch the network (tried {address!r})")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)


@pytest.fixture(autouse=True, scope="session")
def data_outside_the_repository(tmp_path_factory):
    """Generated rows, caches and results of a test run go to a temporary folder, never into ``data/``
    (the committed ``data/processed/cpu`` files are read through their own paths, fixed at import)."""
    import helpers.config as config

    patch = pytest.MonkeyPatch()
    patch.setattr(config, "DATA_DIR", tmp_path_factory.mktemp("data"))
    yield
    patch.undo()


@pytest.fixture(autouse=True, scope="session")
def no_dataset_fingerprints():
    """A dataset fingerprint hashes every argument of a ``map``, and TRL's trainers pass the tokenizer: 151,665
    tokens, about 5 s to hash, four maps per trainer. A test's datasets are built once and never read back from
    the cache, so a random fingerprint serves as well (the notebooks keep the real ones)."""
    import datasets

    patch = pytest.MonkeyPatch()
    patch.setattr(datasets.arrow_dataset, "update_fingerprint", lambda *args: datasets.fingerprint.generate_random_fingerprint())
    yield
    patch.undo()
