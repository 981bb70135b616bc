"""Modules the tests share: simulated C libraries, child processes, loopback servers."""
