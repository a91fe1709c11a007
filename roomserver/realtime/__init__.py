"""The realtime core: the node, this process's sockets (hub), cross-node fan-out (broker), presence, the one durable writer (history), and the opt-in traffic recorder."""
