#!/usr/bin/python3
"""Start Debian bookworm's masakari-api 14.0.2 for integration tests, with two patches.

Run with Debian's interpreter (/usr/bin/python3), not a pyenv python first on PATH, and pass
the same arguments as to masakari-api (e.g. ``--config-file masakari.conf``).

1. python3-oslo.messaging 14.0.3 (bookworm-security) sanitizes the request context before
   notifying, and masakari's RequestContext rejects the result (``ValueError: read_deleted can
   only be one of 'no', 'yes' or 'only', not None``) on every create. Replace the sanitizer by
   the identity function (notifications go to the noop driver anyway).
2. Creating a host asks Nova whether the hypervisor exists; there is no Nova here, so
   ``find_compute_service`` becomes a no-op.
"""
import sys

# masakari.cmd monkey-patches eventlet on import: do it before anything else is imported.
import masakari.cmd  # noqa: F401,E402
import oslo_messaging.notify.notifier as _notifier  # noqa: E402

_notifier._sanitize_context = lambda ctxt: ctxt

import masakari.compute.nova as _nova  # noqa: E402


def _find_compute_service(self, context, compute_name):
    return None


_nova.API.find_compute_service = _find_compute_service

from masakari.cmd.api import main  # noqa: E402

if __name__ == "__main__":
    sys.argv[0] = "masakari-api"
    sys.exit(main())
