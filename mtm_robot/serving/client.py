"""Moved: the client is :mod:`mtm_robot_client` (the installable client, ``client/``).

Kept so that old imports keep working; new code imports ``mtm_robot_client``.
"""

from mtm_robot_client.client import MAX_REPLY_BYTES, NodeClient, Reply, act_request
from mtm_robot_client.errors import NodeError, NodeTimeoutError

__all__ = ["MAX_REPLY_BYTES", "NodeClient", "NodeError", "NodeTimeoutError", "Reply", "act_request"]
