"""``pixi-pack-ci image``: OCI images from a lockfile or a pack, without a container daemon.

Modules: :mod:`.refs` (what the user names: outputs, bases, registry references, platforms),
:mod:`.blobs` (content-addressed blobs, canonical JSON, descriptors), :mod:`.layers` (which
installed file goes into which layer; deterministic, compressed layer tars), :mod:`.imageconfig`
(the image config: activation, entrypoint, labels), :mod:`.registry` (a distribution-spec client on
httpx), :mod:`.base` (base images), :mod:`.outputs` (OCI layout and archive), :mod:`.build` (the
command).
"""
