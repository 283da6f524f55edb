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
EVENT_PHASE = "phase"  # an upgrade's progress, streamed to the client that asked for it

# -- channel ops: the supervisor asks a child ----------------------------------------------------
OP_GO = "go"  # the new generation: start accepting on the public listeners
OP_DRAIN = "drain"  # the old generation: stop accepting, finish in-flight work, exit
OP_AFTER_CUTOVER = "after_cutover"  # the new generation: run the hook with the handoff value
OP_CALL = "call"  # a service process: call one of its methods

# -- channel events: a child tells the supervisor ------------------------------------------------
EVENT_HELLO = "hello"  # first: its pid, hotswap and protocol versions
EVENT_READY = "ready"  # started and able to serve (then probed)
EVENT_SERVING = "serving"  # accepting on the public listeners
EVENT_BEFORE_CUTOVER = "before_cutover"  # the old generation's hook result
# not sent by a child: the supervisor's reader reports a broken channel with it
EVENT_PROTOCOL_ERROR = "protocol_error"
