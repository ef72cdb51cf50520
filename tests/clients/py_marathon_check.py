"""The `marathon` Python client (0.13, unmodified) against offerd: it builds model objects from
every field of every answer and raises on any field Marathon does not define, so each call below
is also a check of offerd's response shapes. Usage: py_marathon_check.py OFFERD_URL"""

import json
import sys
import time
import urllib.request

from marathon import MarathonClient
# (Constraints are left out of the request: 0.13's encoder uses collections.Iterable, gone
# since Python 3.10; reading them back is still covered by the apps listed below.)
from marathon.models import MarathonApp


def wait(what, cond, limit=60):
    end = time.time() + limit
    while time.time() < end:
        if cond():
            return
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def main():
    c = MarathonClient(sys.argv[1])
    info = c.get_info()
    assert info.name == "offerd", info.name
    assert c.ping().strip() in ("pong", b"pong"), c.ping()
    assert c.get_leader()

    app = MarathonApp(
        cmd="sleep 600",
        cpus=0.1,
        mem=16,
        instances=2,
        labels={"SERVICE_TAGS": "py"},
    )
    created = c.create_app("py/sleeper", app)
    assert created.id == "/py/sleeper", created.id

    def running(n):
        return lambda: len([t for t in c.list_tasks("/py/sleeper") if t.state == "TASK_RUNNING"]) == n

    wait("2 running tasks", running(2))
    apps = c.list_apps(embed_tasks=True, embed_counts=True)
    mine = [a for a in apps if a.id == "/py/sleeper"]
    assert mine and mine[0].tasks_running == 2, mine
    got = c.get_app("/py/sleeper")
    assert got.instances == 2 and len(got.tasks) == 2
    assert all(t.host and t.ports and t.slave_id for t in got.tasks), got.tasks

    wait("the start deployment to finish", lambda: not c.list_deployments())
    c.scale_app("/py/sleeper", instances=3)
    wait("3 running tasks", running(3))
    wait("the scale deployment to finish", lambda: not c.list_deployments())

    victim = c.list_tasks("/py/sleeper")[0]
    c.kill_task("/py/sleeper", victim.id, scale=True)
    wait("2 running tasks after kill with scale", running(2))
    assert c.get_app("/py/sleeper").instances == 2

    c.list_queue()
    versions = c.list_versions("/py/sleeper")
    assert len(versions) >= 3, versions
    wait("the kill deployment to finish", lambda: not c.list_deployments())
    c.restart_app("/py/sleeper")
    c.list_deployments()
    wait("the restart deployment to finish", lambda: not c.list_deployments())
    c.delete_app("/py/sleeper", force=True)
    wait("the app to be gone", lambda: not [a for a in c.list_apps() if a.id == "/py/sleeper"])

    # A BRIDGE Docker app in Marathon 1.5+'s form (no instances: only its shape is read back):
    # networks, container.portMappings with an assigned servicePort, no portDefinitions.
    # Posted as plain JSON: 0.13's encoder of nested objects fails on Python 3.10+ (see above).
    bridge = {
        "id": "/py/bridge", "instances": 0, "cpus": 0.1, "mem": 16,
        "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": "busybox"},
                      "portMappings": [{"containerPort": 80}]},
    }
    req = urllib.request.Request(sys.argv[1].rstrip("/") + "/v2/apps", method="POST",
                                 data=json.dumps(bridge).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        assert resp.status == 201, resp.status
    got = c.get_app("/py/bridge")
    assert [a for a in c.list_apps(embed_tasks=True) if a.id == "/py/bridge"]
    assert got.networks == [{"mode": "container/bridge"}], got.networks
    mapping = got.container.port_mappings[0]
    assert 10000 <= mapping.service_port <= 20000 and mapping.host_port == 0, mapping
    assert not got.port_definitions, got.port_definitions
    c.delete_app("/py/bridge", force=True)
    print("py-marathon: all checks passed")


if __name__ == "__main__":
    main()
