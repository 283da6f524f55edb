"""The control socket: the wire protocol (pure), the server in the supervisor, the client."""
