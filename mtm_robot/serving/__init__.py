"""The inference node and its wire protocol (see ``docs/protocol.md``).

The wire codec, error codes and client live in the installable ``mtm_robot_client`` package
(``client/``; ``protocol`` and ``client`` here only re-export it). Light modules (pyzmq):
``security``, ``process``. Node side (torch, ONNX Runtime): ``server``, ``batcher``,
``backends``, ``contexts``, ``stats``, ``broker``.
"""
