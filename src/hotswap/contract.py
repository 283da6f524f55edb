"""The named contracts between hotswap's processes. Both sides import these names; a literal
on one side only is a bug (uvicorn's supervisor reads the ``STARTUP_FAILURE`` its workers
return; tableflip keeps its ``env.go`` and ``fds.go``).

The control socket: ``<state dir>/CONTROL_SOCKET``. A client (the CLI, the Python API, a
generation) sends the supervisor one of the ``OP_*`` control ops; a long op streams
``EVENT_PHASE`` events before its final response. The framing and the message shapes are in
``hotswap.control.protocol`` and ``hotswap.control.connection``.

The channel (a private socketpair between the supervisor and each child): the supervisor sends
a generation ``OP_GO``, ``OP_DRAIN``, ``OP_AFTER_CUTOVER``, ``OP_HOT_UPGRADE`` or ``OP_PING``,
and a service process ``OP_CALL``; a child sends the ``EVENT_*`` events (``hello`` first, with
its protocol version).

Descriptors of a generation: 0 is /dev/null, 1 and 2 go to the supervisor's log pipe,
``LISTEN_FDS_START`` .. ``LISTEN_FDS_START + LISTEN_FDS - 1`` are the public listeners
(systemd's protocol), then the private probe socket and the channel (their numbers are in
``ENV_PROBE_FD`` and ``ENV_CHANNEL_FD``). A service process has only its channel, at
``LISTEN_FDS_START``.

Exit codes: a child that fails before it is ready exits with ``STARTUP_FAILURE``; the
supervisor reads it and does not respawn such a child (uvicorn's ``STARTUP_FAILURE``).
"""

from __future__ import annotations

# -- the control socket --------------------------------------------------------------------------
CONTROL_SOCKET = "control.sock"  # in the state dir

# -- control ops: a client asks the supervisor ---------------------------------------------------
OP_PING = "ping"  # also on the channel: is the child alive
OP_STATUS = "status"
OP_UPGRADE = "upgrade"  # blue-green to a release (a tarball path or a release id)
OP_ROLLBACK = "rollback"  # blue-green back to the previous release
OP_HOT_UPGRADE = "hot_upgrade"  # also on the channel: patch the active generation in place
OP_SERVICE_CALL = "service.call"
OP_HANDOFF_PUT = "handoff.put"
OP_HANDOFF_GET = "handoff.get"
OP_HANDOFF_GET_ALL = "handoff.get_all"
OP_HANDOFF_DELETE = "handoff.delete"
OP_LOGS = "logs"  # the supervisor's recent log lines, after a cursor (waiting for one if asked)
EVENT_PHASE = "phase"  # an upgrade's progress, streamed to the client that asked for it

# -- channel ops: the supervisor asks a child ----------------------------------------------------
OP_GO = "go"  # the new generation: start accepting on the public listeners
OP_DRAIN = "drain"  # the old generation: stop accepting, finish in-flight work, exit
OP_AFTER_CUTOVER = "after_cutover"  # the new generation: run the hook with the handoff value
OP_CALL = "call"  # a service process: call one of its methods
# a hot upgrade of several workers, two-phase: every worker prepares (nothing changes), then
# every worker commits and holds in its window (requests suspended) until the supervisor
# decides: every worker applied it (keep it) or one could not (every worker rolls back)
OP_HOT_PREPARE = "hot_prepare"
OP_HOT_COMMIT = "hot_commit"  # answered after the decision: the stats, or the rollback
OP_HOT_DECIDE = "hot_decide"  # {"keep": bool}
OP_HOT_FINISH = "hot_finish"  # the release is current: finish what waited for that
OP_HOT_ABORT = "hot_abort"  # a prepared upgrade is dropped (another worker refused it)
OP_HOT_PROCEED = "hot_proceed"  # {"analysis": path, "go": bool}: read it now, or drop it
OP_HOT_TURN = "hot_turn"  # {"analysis": path}: a core is free, take the part needing no analysis

# -- channel events: a child tells the supervisor ------------------------------------------------
EVENT_HELLO = "hello"  # first: its pid, hotswap and protocol versions
EVENT_READY = "ready"  # started and able to serve (then probed)
EVENT_SERVING = "serving"  # accepting on the public listeners
EVENT_BEFORE_CUTOVER = "before_cutover"  # the old generation's hook result
EVENT_HOT_ANALYZED = "hot_analyzed"  # the first worker's analysis is written for the others
EVENT_HOT_TURN_DONE = "hot_turn_done"  # a reader took that part: the core is free again
EVENT_HOT_APPLIED = "hot_applied"  # a two-phase hot upgrade is applied here, waiting to hear
# not sent by a child: the supervisor's reader reports a broken channel with it
EVENT_PROTOCOL_ERROR = "protocol_error"

# -- descriptors -------------------------------------------------------------------------------
LISTEN_FDS_START = 3  # sd_listen_fds(3): the first inherited descriptor

# -- environment of a child --------------------------------------------------------------------
ENV_CHILD = "HOTSWAP_CHILD"  # "1" in every process the supervisor starts
ENV_RELEASE_DIR = "HOTSWAP_RELEASE_DIR"  # the unpacked release it runs
ENV_STATE_DIR = "HOTSWAP_STATE_DIR"
ENV_CONTROL_SOCKET = "HOTSWAP_CONTROL_SOCKET"
ENV_GENERATION = "HOTSWAP_GENERATION"  # its generation number
ENV_WORKER = "HOTSWAP_WORKER"  # a worker: its index in its generation, 0..N-1
ENV_WORKERS = "HOTSWAP_WORKERS"  # and N, the generation's worker count
ENV_PROBE_FD = "HOTSWAP_PROBE_FD"  # the private probe socket
ENV_CHANNEL_FD = "HOTSWAP_CHANNEL_FD"  # the channel to the supervisor
ENV_OUTGOING = "HOTSWAP_OUTGOING"  # JSON: the generation it replaces
ENV_SERVICE = "HOTSWAP_SERVICE"  # a service process: its name
ENV_SERVICE_ENTRY = "HOTSWAP_SERVICE_ENTRY"  # and its entry (module:attr)
# what a child must not inherit from the supervisor's own environment
ENV_NOT_INHERITED = ("HOTSWAP", "LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES", "NOTIFY_SOCKET")

# -- exit codes ----------------------------------------------------------------------------------
STARTUP_FAILURE = 3  # failed before ready: not respawned
GIVE_UP = 1  # the supervisor's exit status when the app keeps dying

# -- defaults that more than one module needs ----------------------------------------------------
SUSPEND_TIMEOUT = 3.0  # hot upgrade: how long to wait for the app to quiesce
HOT_UPGRADE_GRACE = 120.0  # beyond suspend_timeout, for the hot upgrade's other steps
HOT_HOLD_TIMEOUT = 10.0  # a worker holding an applied upgrade rolls back if it hears nothing
GO_TIMEOUT = 5.0  # the new generation acknowledges "go"
RESTART_INITIAL = 1.0  # restart backoff: the first delay,
RESTART_MAXIMUM = 30.0  # doubling to this,
MAX_RESTARTS = 5  # at most this many restarts
RESTART_WINDOW = 60.0  # in this many seconds
STABILITY_WINDOW = 10.0  # a new release dying this soon after cutover is rolled back
