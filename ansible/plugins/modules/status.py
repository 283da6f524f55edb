#!/usr/bin/python
# Copyright: hotswap contributors
# MIT License (see the hotswap repository)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: status
short_description: A host's hotswap status as facts
description:
  - Runs C(hotswap status --json) on the host and returns it as the fact C(hotswap), with
    what a fleet view needs on top, the active release, how it got there (blue-green, hot,
    rollback, from the state dir's history), its generation and uptime, and whether it is the
    release a bucket's C(current.json) names.
  - With C(probe=true), asks the active release's own health path through the supervisor's
    public listener, as a load balancer would (the probe the supervisor gates each swap on).
  - Never changes anything. A host whose supervisor does not answer gets C(running=false).
version_added: "0.1.0"
options:
  pointer:
    description:
      - An C(s3://bucket/prefix/) URL (its C(current.json) is read on the host) or a release
        id, to compare the active release with.
    type: str
  probe:
    description: GET the active release's health path on the first TCP listener.
    type: bool
    default: false
  probe_timeout:
    description: Seconds the probe may take.
    type: float
    default: 5.0
  state_dir:
    description: The app's state dir on the host.
    type: path
  executable:
    description: The C(hotswap) command on the host.
    type: str
    default: hotswap
author: hotswap contributors
"""

EXAMPLES = r"""
- name: What each host runs, against the bucket's current.json
  hotswap.fleet.status:
    pointer: s3://releases/myapp/
    state_dir: /var/lib/myapp
- ansible.builtin.debug:
    msg: "{{ hotswap.release }} ({{ hotswap.how }}), matches current: {{ hotswap.matches }}"
"""

RETURN = r"""
ansible_facts:
  description: C(hotswap), the summary below plus C(raw), the whole C(hotswap status --json).
  returned: always
  type: dict
"""

import json  # noqa: E402
import os  # noqa: E402

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible.module_utils.urls import open_url  # noqa: E402
from ansible_collections.hotswap.fleet.plugins.module_utils.hotswap_cli import (  # noqa: E402
    HotswapFailure,
    common_argument_spec,
    is_s3,
    read_state_file,
    run_json,
    state_args,
    status,
)


def how_it_got_there(st, state, active):
    """(how, at) for the active generation's code: the newest successful swap of this
    supervisor that left it there (``initial``, ``blue-green``, ``rollback``, ``hot``,
    ``restart``), else the newest history entry of the state dir that made it current."""
    for record in st.get("recent", []):
        if (
            record.get("ok")
            and record.get("generation") == active.get("generation")
            and record.get("release") == active.get("release")
        ):
            return record.get("how"), record.get("at")
    for entry in state.get("history", []):
        if isinstance(entry, dict) and entry.get("release") == active.get("release"):
            return entry.get("how"), entry.get("at")
    return None, None


def health_path(state_dir, release):
    try:
        with open(os.path.join(state_dir, "releases", release, "RELEASE.json")) as f:
            return json.load(f)["app"].get("health_path")
    except (OSError, ValueError, KeyError, TypeError):
        return None


def probe(module, st, path):
    """GET ``path`` on the supervisor's first TCP listener: {url, status, ok}."""
    tcp = [a for a in st["supervisor"].get("listeners", []) if not a.startswith("unix:")]
    if not tcp:
        return {"url": None, "status": None, "ok": None, "skipped": "no TCP listener"}
    url = "http://%s%s" % (tcp[0], path or "/")
    try:
        response = open_url(url, timeout=module.params["probe_timeout"], validate_certs=False)
        code = response.getcode()
    except Exception as e:  # an HTTPError carries the status; anything else is a failed probe
        code = getattr(e, "code", None)
        if code is None:
            return {"url": url, "status": None, "ok": False, "error": str(e)}
    return {"url": url, "status": code, "ok": 200 <= code < 400}


def main():
    spec = common_argument_spec()
    spec.update(
        pointer=dict(type="str"),
        probe=dict(type="bool", default=False),
        probe_timeout=dict(type="float", default=5.0),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    try:
        st = status(module)
        pointer = p["pointer"]
        if pointer and is_s3(pointer):
            pointer = run_json(module, ["fetch", pointer, "--head"] + state_args(p))["release_id"]
    except HotswapFailure as e:
        module.fail_json(**e.fail_kwargs())
    if st is None:
        fact = dict(running=False, release=None, pointer=pointer, matches=False)
        module.exit_json(changed=False, ansible_facts=dict(hotswap=fact), **fact)
    active = st.get("active") or {}
    release = active.get("release")
    state_dir = st["supervisor"].get("state_dir") or p["state_dir"]
    how, at = how_it_got_there(st, read_state_file(state_dir), active)
    fact = dict(
        running=True,
        release=release,
        version=active.get("version"),
        generation=active.get("generation"),
        pid=active.get("pid"),
        uptime_s=active.get("uptime_s"),
        supervisor_pid=st["supervisor"].get("pid"),
        supervisor_uptime_s=st["supervisor"].get("uptime_s"),
        listeners=st["supervisor"].get("listeners"),
        state_dir=state_dir,
        how=how,
        since=at,
        current=st.get("current"),
        previous=st.get("previous"),
        upgrading=st.get("upgrading"),
        pointer=pointer,
        matches=(release == pointer) if pointer else None,
        raw=st,
    )
    if p["probe"]:
        fact["probe"] = probe(module, st, health_path(state_dir, release) if release else None)
    summary = dict((k, v) for k, v in fact.items() if k != "raw")
    module.exit_json(changed=False, ansible_facts=dict(hotswap=fact), **summary)


if __name__ == "__main__":
    main()
