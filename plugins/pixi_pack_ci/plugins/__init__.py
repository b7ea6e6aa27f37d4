"""Built-in plugins of pixi-pack-ci, each registered through the ``pixi_pack_ci`` entry-point group.

They talk to the core only through its hooks and public API (``pixi_pack_ci.core``, nothing below it).
"""
