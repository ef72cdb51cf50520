"""Reads the junit XML of a py-consul suite run and decides whether it passed: every failure
must be listed (with its reason) in expected-failures.txt, every listed test must still fail,
and at least 95% of the tests that need no ACL-enabled server must pass, and as many of those
that do (the `acl_consul` fixture: catalogd started with ACLs on and an initial management
token from a Consul configuration file).

Usage: summarize.py JUNIT_XML EXPECTED_FAILURES TESTS_API_DIR"""

import pathlib
import re
import sys
import xml.etree.ElementTree as ET

GOAL = 0.95


def acl_tests(api_dir):
    """Test names (file::Class::test) whose signature takes the ACL fixture."""
    names = set()
    for path in pathlib.Path(api_dir).glob("test_*.py"):
        cls = None
        for line in path.read_text(encoding="utf-8").splitlines():
            m = re.match(r"class (\w+)", line)
            if m:
                cls = m.group(1)
            m = re.match(r"\s+def (test_\w+)\(self, acl_consul", line)
            if m and cls:
                names.add(f"{path.stem}::{cls}::{m.group(1)}")
    return names


def main():
    junit, expected_path, api_dir = sys.argv[1:4]
    expected = {}
    for line in pathlib.Path(expected_path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            expected[name] = reason.strip(" -#")
    acl = acl_tests(api_dir)
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        module = case.get("classname", "").split(".")
        name = f"{module[-2]}::{module[-1]}::{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            outcomes[name] = "failed"
        elif case.find("skipped") is not None:
            outcomes[name] = "skipped"
        else:
            outcomes[name] = "passed"
    plain = {n: o for n, o in outcomes.items() if n not in acl}
    passed = sum(1 for o in plain.values() if o == "passed")
    total = len(plain)
    acl_passed = sum(1 for n, o in outcomes.items() if n in acl and o == "passed")
    ok = True
    acl_ran = sum(1 for n in outcomes if n in acl)
    print(f"py-consul suite: {passed}/{total} tests that need no ACLs passed "
          f"({100.0 * passed / max(total, 1):.1f}%, goal {100 * GOAL:.0f}%); "
          f"ACL tests: {acl_passed}/{acl_ran} passed "
          f"({100.0 * acl_passed / max(acl_ran, 1):.1f}%, goal {100 * GOAL:.0f}%)")
    for name, outcome in sorted(outcomes.items()):
        if outcome == "failed" and name not in expected:
            print(f"  UNEXPECTED FAILURE {name}")
            ok = False
        if outcome == "failed" and name in expected:
            print(f"  known failure {name}: {expected[name]}")
    for name in sorted(expected):
        if outcomes.get(name) == "passed":
            print(f"  {name} now passes: remove it from expected-failures.txt")
            ok = False
        elif name not in outcomes:
            print(f"  {name} is listed but did not run")
            ok = False
    if passed < GOAL * total or acl_passed < GOAL * acl_ran:
        ok = False
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
