"""Fixtures that let py-consul's own API test suite (tests/api of its source distribution, run
unmodified) talk to a fresh catalogd instead of the Consul container its upstream conftest starts.

Upstream starts `consul agent -dev` in Docker with `enable_script_checks` and publishes port 8500;
its tests then point HTTP checks at http://localhost:8500 and http://127.0.0.1:8500, meaning the
agent itself. So catalogd listens on 127.0.0.1:8500 here too, with script checks enabled, one
fresh instance (own state directory) per test, stopped with SIGTERM afterwards.

CATALOGD_BIN names the binary (scripts/py-consul-suite sets it)."""

from __future__ import annotations

import collections
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid

import pytest
import requests

ConsulInstance = collections.namedtuple("ConsulInstance", ["container", "port", "version"])

PORT = 8500
CATALOGD = os.environ.get("CATALOGD_BIN", "catalogd")
LOG_DIR = os.environ.get("SUITE_LOG_DIR")


@pytest.fixture(scope="session", autouse=True)
def _unset_consul_token():
    os.environ.pop("CONSUL_HTTP_TOKEN", None)


def _port_free():
    # SO_REUSEADDR as catalogd's own listener: connections of the previous test left in
    # TIME_WAIT do not count, a process listening there does.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", PORT))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _start(request, extra_args):
    if not _port_free():
        raise RuntimeError(
            f"127.0.0.1:{PORT} is in use: the suite's HTTP checks point at it, so catalogd must "
            "listen there; stop whatever holds it (a demo, a local Consul) and run again"
        )
    state = tempfile.mkdtemp(prefix="catalogd-suite-")
    log_path = os.path.join(LOG_DIR or state, f"{request.node.name}.log")
    log = open(log_path, "w", encoding="utf-8")
    args = [
        CATALOGD,
        "serve",
        "--http-addr",
        f"127.0.0.1:{PORT}",
        "--data-dir",
        os.path.join(state, "data"),
        "--node",
        "cairn-suite",
        "--enable-script-checks",
        *extra_args,
    ]
    proc = subprocess.Popen(args, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{PORT}/v1/"
    deadline = time.time() + 15
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"catalogd exited with {proc.returncode}; see {log_path}")
        if time.time() > deadline:
            proc.kill()
            raise TimeoutError(f"catalogd did not answer within 15s; see {log_path}")
        try:
            if requests.get(base + "status/leader", timeout=1).json():
                break
        except (requests.RequestException, ValueError):
            time.sleep(0.05)
    version = requests.get(base + "agent/self", timeout=5).json()["Config"]["Version"]
    return proc, state, log, version


def _stop(proc, state, log):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log.close()
    shutil.rmtree(state, ignore_errors=True)


@pytest.fixture
def consul_instance(request):
    proc, state, log, version = _start(request, [])
    yield ConsulInstance(proc, PORT, version)
    _stop(proc, state, log)


@pytest.fixture
def acl_consul_instance(request):
    # Upstream hands Consul this configuration (CONSUL_LOCAL_CONFIG); catalogd reads the same
    # file's `acl` block with --config.
    token = str(uuid.uuid4())
    config = {
        "primary_datacenter": "dc1",
        "enable_script_checks": True,
        "acl": {"enabled": True, "tokens": {"initial_management": token}},
    }
    config_dir = tempfile.mkdtemp(prefix="catalogd-suite-config-")
    path = os.path.join(config_dir, "consul.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(config, f)
    proc, state, log, version = _start(request, ["--config", path])
    yield ConsulInstance(proc, PORT, version), token
    _stop(proc, state, log)
    shutil.rmtree(config_dir, ignore_errors=True)


@pytest.fixture
def consul_port(consul_instance):
    return consul_instance.port, consul_instance.version
