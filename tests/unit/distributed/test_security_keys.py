"""Key files, the allow-list folder and the public-bind rule (``plugins/distributed/security``)."""

from __future__ import annotations

import os

import pytest
import zmq

from lama_cleaner.plugins.distributed.security.allow_list import AllowList
from lama_cleaner.plugins.distributed.security.bind_policy import InsecureBind, check_bind, is_loopback
from lama_cleaner.plugins.distributed.security.key_files import KeyFileError, generate, load_public, load_secret
from lama_cleaner.plugins.distributed.security.key_roles import NODE, PRODUCER, KeyRoles
from lama_cleaner.plugins.distributed.security.keys_command import keys_main
from tests.support.waiting import wait_for


def test_generate_writes_a_private_secret_and_a_public_key_zeromq_reads(tmp_path):
    public, secret = generate(tmp_path / "keys", "node-1")
    assert (public.name, secret.name) == ("node-1.key", "node-1.key_secret")
    assert secret.stat().st_mode & 0o777 == 0o600 and public.stat().st_mode & 0o777 == 0o644
    pair = load_secret(secret)
    assert zmq.auth.load_certificate(public) == (pair.public, None)
    assert zmq.curve_public(pair.secret) == pair.public  # a real pair, not two random keys
    assert load_public(public) == load_public(secret) == load_public(pair.public.decode()) == pair.public


def test_generate_never_overwrites_a_pair_unless_forced(tmp_path):
    _, secret = generate(tmp_path, "a")
    first = load_secret(secret)
    with pytest.raises(KeyFileError, match="already exists"):
        generate(tmp_path, "a")
    os.chmod(secret, 0o644)
    generate(tmp_path, "a", force=True)
    assert load_secret(secret) != first and secret.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("name", ["", "../x", ".hidden", "a/b"])
def test_generate_refuses_names_that_are_not_plain_file_names(tmp_path, name):
    with pytest.raises(KeyFileError):
        generate(tmp_path, name)


def test_a_secret_others_can_read_or_a_public_file_is_refused_as_a_secret(tmp_path):
    public, secret = generate(tmp_path, "a")
    os.chmod(secret, 0o640)
    with pytest.raises(KeyFileError, match="chmod 600"):
        load_secret(secret)
    with pytest.raises(KeyFileError, match="no secret key"):
        load_secret(public)
    with pytest.raises(KeyFileError):
        load_public(tmp_path / "missing.key")
    with pytest.raises(KeyFileError):
        load_public("x" * 39 + "\x7f")  # 40 characters, not Z85, and no such file
    with pytest.raises(KeyFileError):
        load_public("x" * 39 + "é")


def test_the_allow_list_follows_its_folder(tmp_path):
    keys, allowed = tmp_path / "keys", tmp_path / "allowed"
    allowed.mkdir()
    for name in ("a", "b", "own"):
        generate(keys, name)
    a, b, own = (load_public(keys / f"{n}.key") for n in ("a", "b", "own"))
    (allowed / "broken.key").write_text("not a certificate\n")
    allow = AllowList(allowed, always=[own], min_interval_s=0.05, deny_interval_s=0.0)
    assert allow.allows(own) and not allow.allows(a)
    (allowed / "a.key").write_bytes((keys / "a.key").read_bytes())
    assert allow.allows(a) and allow.name_of(a) == "a.key"  # at once: a refusal looks again first
    (allowed / "a.key").unlink()
    wait_for(lambda: not allow.allows(a), 5, "a removed key to be refused")
    assert not allow.allows(b) and allow.allows(own) and len(allow) == 1


def test_an_allow_list_does_not_read_its_folder_for_every_question(tmp_path):
    allow = AllowList(tmp_path, min_interval_s=60, deny_interval_s=60)
    reads = allow.reloads
    for _ in range(1000):
        allow.allows(b"x" * 40)
    assert allow.reloads == reads


@pytest.mark.parametrize(
    ("endpoint", "loopback"),
    [
        ("tcp://127.0.0.1:5570", True),
        ("tcp://127.0.0.2:0", True),
        ("tcp://localhost:5570", True),
        ("tcp://[::1]:5570", True),
        ("tcp://0.0.0.0:5570", False),
        ("tcp://*:5570", False),
        ("tcp://[::]:5570", False),
        ("tcp://10.0.0.5:5570", False),
        ("tcp://scheduler.lan:5570", False),
    ],
)
def test_which_binds_are_loopback(endpoint, loopback):
    assert is_loopback(endpoint) is loopback


def test_a_public_bind_needs_keys_and_says_how_in_one_line():
    check_bind("tcp://127.0.0.1:5570", has_keys=False)
    check_bind("tcp://0.0.0.0:5570", has_keys=True)
    with pytest.raises(InsecureBind) as refused:
        check_bind("tcp://0.0.0.0:5570", has_keys=False)
    assert "\n" not in str(refused.value) and "lama-cleaner keys generate scheduler" in str(refused.value)


def test_the_keys_command_generates_and_shows(tmp_path, capsys):
    assert keys_main(["generate", "web-1", "--dir", str(tmp_path)]) == 0
    written = capsys.readouterr().out
    assert keys_main(["show", str(tmp_path / "web-1.key_secret")]) == 0
    shown = capsys.readouterr().out.strip()
    assert len(shown) == 40 and shown in written
    assert keys_main(["generate", "web-1", "--dir", str(tmp_path)]) == 1
    assert "already exists" in capsys.readouterr().err


def test_key_roles_admit_every_folder_and_give_each_key_its_roles(tmp_path):
    keys, web, workers, servers = tmp_path / "keys", tmp_path / "any", tmp_path / "workers", tmp_path / "servers"
    folders = {web: ("both-ways", "all"), workers: ("worker", "all"), servers: ("server", "all")}
    for name in ("both-ways", "worker", "server", "all", "stranger"):
        generate(keys, name)
    for folder, names in folders.items():
        folder.mkdir()
        for name in names:
            (folder / f"{name}.key").write_bytes((keys / f"{name}.key").read_bytes())
    names = ("both-ways", "worker", "server", "all", "stranger")
    key = {n: load_public(keys / f"{n}.key") for n in names}
    roles = KeyRoles(AllowList(web), AllowList(workers), AllowList(servers))
    assert [roles.allows(key[n]) for n in names] == [True, True, True, True, False]
    assert [roles.may(key[n], NODE) for n in names] == [True, True, False, True, False]
    assert [roles.may(key[n], PRODUCER) for n in names] == [True, False, True, True, False]
    without = KeyRoles(AllowList(web))
    assert not without.allows(key["worker"]) and not without.may(key["worker"], NODE)
