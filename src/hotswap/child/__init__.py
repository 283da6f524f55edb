"""A generation's side: bootstrap, channel to the supervisor, server adapters."""
