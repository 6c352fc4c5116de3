"""Moved: the wire codec is :mod:`mtm_robot_client.protocol` (the installable client, ``client/``).

Kept so that old imports keep working; new code imports ``mtm_robot_client.protocol``.
"""

from mtm_robot_client.protocol import *  # noqa: F403
from mtm_robot_client.protocol import __all__  # noqa: F401
