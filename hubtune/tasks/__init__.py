"""The tasks: what differs by task, one module each, and the registry the steps ask."""
