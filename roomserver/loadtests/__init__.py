"""Load testing for roomserver: traffic traces (JSON Lines), a scenario generator, a replayer
that drives thousands of signed-in sockets and reports delivery, loss and latency, and an
opt-in server-side recorder. See docs/loadtests.md."""
