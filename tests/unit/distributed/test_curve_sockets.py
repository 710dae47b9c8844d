"""Socket options of a node's or producer's connection (``security.curve``): the size limit always,
CURVE client keys when configured, and the settings a half-configured peer is refused for."""

from __future__ import annotations

import pytest
import zmq

from lama_cleaner.config import Config
from lama_cleaner.plugins.distributed.security.curve import ClientKeys, ServerSecurity, secure_client
from lama_cleaner.plugins.distributed.security.key_files import KeyFileError, generate, load_public


@pytest.fixture
def dealer():
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    yield sock
    sock.close(0)
    ctx.term()


def test_without_keys_a_peer_socket_only_gets_the_size_limit(dealer):
    config = Config()
    config.distributed.max_message_mb = 3
    assert ClientKeys.from_config(config.distributed) is None
    secure_client(dealer, None, config.distributed)
    assert dealer.getsockopt(zmq.MAXMSGSIZE) == 3 * 1024 * 1024
    assert dealer.getsockopt(zmq.MECHANISM) == zmq.NULL


def test_with_keys_a_peer_socket_is_a_curve_client_of_the_named_scheduler(tmp_path, dealer):
    generate(tmp_path, "scheduler")
    generate(tmp_path, "node")
    dist = Config().distributed
    dist.curve_secret_key = str(tmp_path / "node.key_secret")
    dist.curve_server_key = load_public(tmp_path / "scheduler.key").decode()  # the Z85 text works too
    keys = ClientKeys.from_config(dist)
    secure_client(dealer, keys, dist)
    assert dealer.getsockopt(zmq.MECHANISM) == zmq.CURVE
    assert dealer.getsockopt(zmq.MAXMSGSIZE) == dist.max_message_mb * 1024 * 1024


def test_a_client_key_without_the_schedulers_key_is_refused(tmp_path):
    generate(tmp_path, "node")
    dist = Config().distributed
    dist.curve_secret_key = str(tmp_path / "node.key_secret")
    with pytest.raises(KeyFileError, match="curve_server_key"):
        ClientKeys.from_config(dist)


def test_a_scheduler_with_keys_always_allows_its_own(tmp_path):
    generate(tmp_path, "scheduler")
    dist = Config().distributed
    assert ServerSecurity.from_config(dist, lambda reason: None) is None
    dist.curve_secret_key = str(tmp_path / "scheduler.key_secret")
    security = ServerSecurity.from_config(dist, lambda reason: None)
    assert security is not None and security.allow.allows(load_public(tmp_path / "scheduler.key"))
