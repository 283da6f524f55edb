#!/usr/bin/python
# Copyright: hotswap contributors
# MIT License (see the hotswap repository)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: release
short_description: Ensure a hotswap release is active (or staged) on a host
description:
  - Makes the release C(src) the one a host's hotswap supervisor serves, through
    C(hotswap upgrade --json) (blue-green) or C(hotswap hot-upgrade --json) (in place).
  - Idempotent, when the release is already active and current nothing is run and the result
    is C(changed=false).
  - In check mode nothing is run that changes the host; with C(how=hot) and a local or stored
    release, C(hotswap check) says whether the upgrade would be accepted.
  - With C(state=prepared) the release is downloaded (for C(s3://)), verified and unpacked into
    the host's store, and for C(how=hot) checked against the active release, but nothing that
    serves changes. This is phase one of a fleet-wide two-phase hot upgrade.
  - Failures carry hotswap's stable error C(code) and the C(phase) that failed; hotswap's
    promise is that a failed upgrade changed nothing on the host.
version_added: "0.1.0"
options:
  src:
    description:
      - A release tarball on the host, an C(s3://bucket/prefix/) URL (the release its
        C(current.json) names), an C(s3://.../NAME.tar.gz) URL, or the id of a release already
        in the host's store.
    type: str
    required: true
  sha256:
    description: Expected sha256 of the tarball (default, its C(.sha256) beside it).
    type: str
  how:
    description: C(blue-green) (a new generation, then cutover) or C(hot) (in place).
    type: str
    choices: [blue-green, hot]
    default: blue-green
  state:
    description: C(active) (serve it) or C(prepared) (staged and checked, nothing changes).
    type: str
    choices: [active, prepared]
    default: active
  rollback:
    description:
      - C(src) is the release to go back to. When it is the host's previous release the
        module runs C(hotswap rollback), else an upgrade to it.
    type: bool
    default: false
  hot_fallback:
    description:
      - With C(how=hot), when the hot upgrade is refused or fails (and so changed nothing),
        upgrade blue-green instead.
    type: bool
    default: false
  suspend_timeout:
    description: Hot upgrade, give up (changing nothing) if the process cannot quiesce in time.
    type: float
    default: 3.0
  allow_dependency_changes:
    description: Hot upgrade, allow pure-Python dependencies to change version.
    type: bool
    default: false
  state_dir:
    description: The app's state dir on the host (default, hotswap's own resolution).
    type: path
  executable:
    description: The C(hotswap) command on the host.
    type: str
    default: hotswap
author: hotswap contributors
"""

EXAMPLES = r"""
- name: Blue-green upgrade to what the bucket's current.json names
  hotswap.fleet.release:
    src: s3://releases/myapp/
    state_dir: /var/lib/myapp

- name: Hot upgrade from a tarball on the host, falling back to blue-green
  hotswap.fleet.release:
    src: /srv/dist/myapp-2.0.0-3f2a9c1d0b7e.tar.gz
    how: hot
    hot_fallback: true
"""

RETURN = r"""
release:
  description: The release active after the task (the target when changed).
  type: str
  returned: always
before:
  description: The release active before the task.
  type: str
  returned: always
done:
  description: How the change was made (blue-green, hot, rollback), or none.
  type: str
  returned: always
generation:
  description: The generation serving after the task.
  type: int
  returned: when changed
code:
  description: hotswap's stable error code.
  type: str
  returned: on failure
phase:
  description: The phase of the swap that failed.
  type: str
  returned: on failure
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402
from ansible_collections.hotswap.fleet.plugins.module_utils.hotswap_cli import (  # noqa: E402
    EXIT_CHILD,
    HotswapFailure,
    common_argument_spec,
    find_executable,
    is_s3,
    is_tarball,
    run_json,
    state_args,
    status,
)

HOT_FAILURES = ("hot_upgrade_refused", "hot_upgrade_failed")


def target_release(module, src, sha256):
    """The release id ``src`` names, without changing anything (None if it cannot be known
    before downloading)."""
    p = module.params
    digest = ["--sha256", sha256] if sha256 else []
    if not is_tarball(src):
        return src
    if is_s3(src):
        return run_json(module, ["fetch", src, "--head"] + digest + state_args(p)).get(
            "release_id"
        )
    data = run_json(module, ["inspect", src] + digest + state_args(p))
    return data["manifest"]["release_id"]


def check_hot(module, old, new):
    """``hotswap check OLD NEW``: the verdict (ok or not) as JSON."""
    p = module.params
    argv = [find_executable(module), "check", old, new, "--json"] + state_args(p)
    if p["allow_dependency_changes"]:
        argv.append("--allow-dependency-changes")
    rc, stdout, stderr = module.run_command(argv, check_rc=False)
    if rc in (0, EXIT_CHILD):
        import json

        try:
            return json.loads(stdout)
        except ValueError:
            pass
    try:
        return run_json(module, argv[1:])
    except HotswapFailure as e:
        module.fail_json(**e.fail_kwargs())


def refuse_hot(module, verdict, result):
    reasons = verdict.get("reasons", [])
    text = "; ".join("%s: %s" % (r.get("code"), r.get("message")) for r in reasons)
    failure = dict(result)
    failure.update(
        msg="hotswap check refused the hot upgrade [hot_upgrade_refused]: %s" % text,
        code="hot_upgrade_refused",
        phase="check",
        verdict=verdict,
        changed=False,
    )
    module.fail_json(**failure)


def prepare(module, st, target, result):
    """Phase one: the release in the host's store, verified, and for ``how=hot`` checked."""
    p = module.params
    src, before = p["src"], result["before"]
    listed = run_json(module, ["releases"] + state_args(p))
    known = set(r["id"] for r in listed.get("releases", []))
    if module.check_mode:
        if p["how"] == "hot" and before and not is_s3(src):
            verdict = check_hot(module, before, src)
            if not verdict.get("ok"):
                refuse_hot(module, verdict, result)
        result["changed"] = target is None or target not in known
        module.exit_json(**result)
    local = src
    digest = ["--sha256", p["sha256"]] if p["sha256"] else []
    if is_s3(src):
        local = run_json(module, ["fetch", src] + digest + state_args(p))["path"]
        digest = []
    if is_tarball(local):
        target = run_json(module, ["unpack", local] + digest + state_args(p))["id"]
    result.update(release=target, local=local, changed=target not in known)
    if p["how"] == "hot" and before:
        verdict = check_hot(module, before, target)
        result["verdict"] = verdict
        if not verdict.get("ok"):
            refuse_hot(module, verdict, result)
    module.exit_json(**result)


def swap(module, st, target):
    """Run the upgrade (or rollback) and return its record and how it was done."""
    p = module.params
    digest = ["--sha256", p["sha256"]] if p["sha256"] else []
    blue_green = ["upgrade", p["src"]] + digest
    if p["rollback"] and target is not None and st.get("previous") == target:
        blue_green = ["rollback"]
    if p["how"] != "hot":
        return run_json(module, blue_green + state_args(p)), None
    hot = ["hot-upgrade", p["src"], "--suspend-timeout", str(p["suspend_timeout"])] + digest
    if p["allow_dependency_changes"]:
        hot.append("--allow-dependency-changes")
    try:
        return run_json(module, hot + state_args(p)), None
    except HotswapFailure as e:
        if not (p["hot_fallback"] and e.code in HOT_FAILURES):
            raise
        fallback = {"code": e.code, "message": e.message}
        return run_json(module, blue_green + state_args(p)), fallback


def main():
    spec = common_argument_spec()
    spec.update(
        src=dict(type="str", required=True),
        sha256=dict(type="str"),
        how=dict(type="str", choices=["blue-green", "hot"], default="blue-green"),
        state=dict(type="str", choices=["active", "prepared"], default="active"),
        rollback=dict(type="bool", default=False),
        hot_fallback=dict(type="bool", default=False),
        suspend_timeout=dict(type="float", default=3.0),
        allow_dependency_changes=dict(type="bool", default=False),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    try:
        st = status(module)
        if st is None:
            module.fail_json(
                msg="no hotswap supervisor answers for this state dir [not_running]",
                code="not_running",
            )
        before = st["active"]["release"] if st.get("active") else None
        target = target_release(module, p["src"], p["sha256"])
    except HotswapFailure as e:
        module.fail_json(**e.fail_kwargs())
    result = dict(changed=False, release=target, before=before, done=None, src=p["src"])
    if p["state"] == "prepared":
        try:
            prepare(module, st, target, result)
        except HotswapFailure as e:
            module.fail_json(**dict(e.fail_kwargs(), before=before))
    if target is not None and target == before and st.get("current") == target:
        result["msg"] = "%s is already active" % target
        module.exit_json(**result)
    result["diff"] = {"before": "release: %s\n" % before, "after": "release: %s\n" % target}
    if module.check_mode:
        if p["how"] == "hot" and before and not is_s3(p["src"]):
            verdict = check_hot(module, before, p["src"])
            if not verdict.get("ok") and not p["hot_fallback"]:
                refuse_hot(module, verdict, result)
        result.update(changed=True, msg="would %s %s -> %s" % (p["how"], before, target))
        module.exit_json(**result)
    try:
        record, fallback = swap(module, st, target)
    except HotswapFailure as e:
        module.fail_json(**dict(e.fail_kwargs(), before=before, release=before))
    result.update(
        changed=True,
        release=record.get("release"),
        done=record.get("how"),
        generation=record.get("generation"),
        pid=record.get("pid"),
        total_ms=record.get("total_ms"),
        timings_ms=record.get("timings_ms"),
        diff={"before": "release: %s\n" % before, "after": "release: %s\n" % record.get("release")},
    )
    if fallback:
        result["hot_error"] = fallback
    module.exit_json(**result)


if __name__ == "__main__":
    main()
