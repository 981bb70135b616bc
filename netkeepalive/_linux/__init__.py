"""Linux-only parts: /proc, pidfd, bpf(2) and the BPF programs, the silenced peer."""
