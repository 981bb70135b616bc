"""The lock around every one-time set-up, held across ``os.fork()``.

Loading the C library (:mod:`._libc`), creating the backend (:mod:`._backends`)
and building classes (:mod:`.urllib3`) happen once, under this lock.  A
thread that forks while another holds it would give a child whose only
thread waits forever for a lock no thread of its own will release, so
``os.fork()`` first waits for it (``os.register_at_fork``), and parent and
child each release it afterwards.  It is re-entrant: a fork from inside the
set-up (a ``preexec_fn``, a signal handler) takes it again instead of
waiting for itself.  One lock, registered when ``import netkeepalive`` runs,
so no fork can slip between the registration of two locks.
"""

from __future__ import annotations

import os
import threading

__all__ = ["lock"]

lock = threading.RLock()

if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(
        before=lock.acquire, after_in_parent=lock.release, after_in_child=lock.release
    )
