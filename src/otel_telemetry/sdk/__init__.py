"""The side that runs inside the instrumented application.

Never imports ``collector``, ``store``, ``query``, ``cli`` or ``dashboard`` (``tests/test_layout.py``
checks it): an instrumented app loads only the OTel SDK, pyzmq, msgpack, orjson and the optional C
extension ``_fastspan``. See docs/architecture.md for the module table.
"""
