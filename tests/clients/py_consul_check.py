"""Drives catalogd with py-consul, an unmodified Consul client library, the way an operator's
Python script would. Exits non-zero (with a traceback) on the first thing that does not behave as
it does against Consul. Usage: py_consul_check.py PORT"""

import base64
import sys
import threading
import time

import consul

port = int(sys.argv[1])
c = consul.Consul(host="127.0.0.1", port=port)

# Agent and status: clients read these before anything else.
me = c.agent.self()
assert me["Config"]["Datacenter"] == "dc1", me
assert me["Config"]["NodeName"], me
assert c.status.leader(), "leader must be non-empty"
assert c.status.peers(), "peers must be non-empty"

# py-consul hands back X-Consul-Index as the header string, as it does against Consul.
# KV: put/get, flags, cas, recurse, keys, delete; a missing key is (index, None).
assert c.kv.put("py/app/name", "shop") is True
assert c.kv.put("py/app/replicas", "3", flags=7) is True
index, entry = c.kv.get("py/app/name")
assert int(index) > 0 and entry["Value"] == b"shop", (index, entry)
_, entry = c.kv.get("py/app/replicas")
assert entry["Flags"] == 7, entry
assert c.kv.put("py/app/name", "nope", cas=0) is False
assert c.kv.put("py/app/name", "shop2", cas=entry["ModifyIndex"] + 100) is False
index, missing = c.kv.get("py/none")
assert int(index) > 0 and missing is None, (index, missing)
_, tree = c.kv.get("py/", recurse=True)
assert [e["Key"] for e in tree] == ["py/app/name", "py/app/replicas"], tree
_, keys = c.kv.get("py/", keys=True, separator="/")
assert keys == ["py/app/"], keys

# Blocking query: returns when the key changes, with a higher index.
index, _ = c.kv.get("py/app/name")
threading.Timer(0.5, lambda: c.kv.put("py/app/name", "changed")).start()
started = time.time()
new_index, entry = c.kv.get("py/app/name", index=index, wait="20s")
assert int(new_index) > int(index) and entry["Value"] == b"changed", (new_index, entry)
assert time.time() - started < 15, "blocking query did not return on change"

# Agent service with a TTL check, health with passing.
c.agent.service.register("web", service_id="web-1", port=8080, tags=["prod"],
                         check=consul.Check.ttl("30s"), meta={"lb_vhost": "web.example.com"})
_, nodes = c.health.service("web", passing=True)
assert nodes == [], "a fresh TTL check is critical"
c.agent.check.ttl_pass("service:web-1", notes="ok")
_, nodes = c.health.service("web", passing=True)
assert len(nodes) == 1 and nodes[0]["Service"]["Port"] == 8080, nodes
assert nodes[0]["Service"]["Meta"]["lb_vhost"] == "web.example.com"
_, services = c.catalog.services()
assert services["web"] == ["prod"], services
_, rows = c.catalog.service("web", tag="prod")
assert rows[0]["ServiceID"] == "web-1", rows
assert "web-1" in c.agent.services()
assert c.agent.checks()["service:web-1"]["Status"] == "passing"
_, filtered = c.health.service("web", filter_expr='Service.Meta.lb_vhost == "web.example.com"')
assert len(filtered) == 1, filtered

# Catalog registration of another node.
assert c.catalog.register("n2", "10.0.0.2", service={"Service": "db", "Port": 5432}) is True
_, node = c.catalog.node("n2")
assert node["Services"]["db"]["Port"] == 5432, node
assert c.catalog.deregister("n2") is True

# Sessions and locks.
sid = c.session.create(name="leader", ttl=10, lock_delay=0)
assert c.kv.put("py/leader", "me", acquire=sid) is True
other = c.session.create(name="follower", lock_delay=0)
assert c.kv.put("py/leader", "them", acquire=other) is False
_, info = c.session.info(sid)
assert info["ID"] == sid and info["TTL"] == "10s", info
renewed = c.session.renew(sid)
assert renewed["ID"] == sid, renewed
c.session.destroy(sid)
_, entry = c.kv.get("py/leader")
assert "Session" not in entry or not entry["Session"], entry
assert c.kv.put("py/leader", "them", acquire=other) is True

# Transactions.
value = base64.b64encode(b"t").decode()
result = c.txn.put([{"KV": {"Verb": "set", "Key": "py/txn/a", "Value": value}},
                    {"KV": {"Verb": "get", "Key": "py/txn/a"}}])
assert result["Errors"] is None and len(result["Results"]) == 2, result

# Deregistration.
c.agent.service.deregister("web-1")
_, nodes = c.health.service("web")
assert nodes == [], nodes
print("py-consul: all checks passed")
