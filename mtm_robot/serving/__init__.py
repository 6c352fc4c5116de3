"""The inference node and its wire protocol (see ``docs/protocol.md``).

Light modules (numpy + pyzmq, safe for a control process): ``protocol``, ``client``,
``security``. Node side (torch, ONNX Runtime): ``server``, ``batcher``, ``backends``,
``contexts``, ``stats``, ``broker``.
"""
