# Copyright: hotswap contributors
# MIT License (see the hotswap repository)
"""Run the host's ``hotswap`` command with ``--json`` and read its one JSON object.

The modules never import hotswap: the Python that runs Ansible modules on a host need not be
the one hotswap is installed in. They run ``hotswap ... --json`` (the ``executable`` option),
which prints one object on stdout, ``{"ok": false, "error": {"code", "message", "details"}}``
on failure, with an exit status that says whose fault it was.
"""

from __future__ import absolute_import, division, print_function

import json
import os

__metaclass__ = type

EXIT_CHILD = 4  # `hotswap check` says "not hot-applicable" with this status and ok output


class HotswapFailure(Exception):
    """A ``hotswap`` command failed: its stable ``code``, message, phase and output tail."""

    def __init__(self, code, message, details=None, argv=None, rc=None, stderr=""):
        super(HotswapFailure, self).__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        self.argv = argv
        self.rc = rc
        self.stderr = stderr

    @property
    def phase(self):
        return self.details.get("phase")

    def fail_kwargs(self, host_msg=""):
        out = {
            "msg": "hotswap%s failed [%s]%s: %s"
            % (" " + self.argv[1] if self.argv and len(self.argv) > 1 else "", self.code,
               " in phase %s" % self.phase if self.phase else "", self.message),
            "code": self.code,
            "phase": self.phase,
            "error": {"code": self.code, "message": self.message, "details": self.details},
            "rc": self.rc,
            "cmd": self.argv,
        }
        if self.stderr:
            out["stderr"] = self.stderr
        if host_msg:
            out["msg"] = host_msg + ": " + out["msg"]
        return out


def common_argument_spec():
    return dict(
        state_dir=dict(type="path"),
        executable=dict(type="str", default="hotswap"),
    )


def state_args(params):
    return ["--state-dir", params["state_dir"]] if params.get("state_dir") else []


def find_executable(module):
    """The ``hotswap`` command: a path as it is, a bare name looked up in PATH; else
    ``tool_missing``."""
    executable = module.params["executable"]
    found = executable if os.sep in executable else module.get_bin_path(executable)
    if not found or not os.access(found, os.X_OK):
        raise HotswapFailure(
            "tool_missing",
            "cannot run %s: not found or not executable (set hotswap_executable)" % executable,
            argv=[executable],
        )
    return found


def run_json(module, argv, ok_codes=(0,)):
    """Run ``argv`` (``hotswap`` first) and return its JSON object; raise HotswapFailure with
    hotswap's own error code when it failed."""
    executable = find_executable(module)
    full = [executable] + list(argv)
    if "--json" not in full:
        full.append("--json")
    rc, stdout, stderr = module.run_command(full, check_rc=False)
    try:
        data = json.loads(stdout) if stdout.strip() else None
    except ValueError:
        data = None
    if rc in ok_codes and isinstance(data, dict) and data.get("ok", True) is not False:
        return data
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        err = data["error"]
        raise HotswapFailure(
            err.get("code", "unknown"), err.get("message", ""), err.get("details"), full, rc,
            stderr[-4000:],
        )
    raise HotswapFailure(
        "protocol_error",
        "%s exited %s without a JSON result: %s" % (" ".join(full), rc, (stderr or stdout)[-2000:]),
        argv=full,
        rc=rc,
        stderr=stderr[-4000:],
    )


def status(module):
    """``hotswap status --json``, or None when no supervisor answers (``not_running``)."""
    try:
        return run_json(module, ["status"] + state_args(module.params))
    except HotswapFailure as e:
        if e.code == "not_running":
            return None
        raise


def is_s3(ref):
    return ref.startswith("s3://")


def is_tarball(ref):
    """hotswap's own rule: a release is named by a tarball path or an id; ids have no '/'."""
    return is_s3(ref) or "/" in ref or ref.endswith(".tar.gz")


def read_state_file(state_dir):
    """The host's ``state.json`` (current, previous, history), or {} when unreadable."""
    if not state_dir:
        return {}
    try:
        with open(os.path.join(state_dir, "state.json")) as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
