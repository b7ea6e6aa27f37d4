"""``pixi-pack-ci image``: environment → install at the prefix → layers → config → manifest(s)
→ outputs and pushes. Every flag is checked before any download; outputs appear whole or not at
all; a push sends blobs first, an index's manifests by digest next, and the tag last."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

from .. import __version__
from ..cache import file_digest
from ..model import ImageLayer, ImageOptions, ImageResult, PackOptions
from ..plugin_manager import PluginManager
from . import environment as env_mod
from .additions import Addition, addition_files, parse_add
from .base import BaseImage, fetch_base_layer, fetch_base_layers, layout_base, registry_base
from .blobs import INDEX, MANIFEST, BlobStore, Descriptor, canonical_json
from .errors import ImageError, ImageUsageError
from .imageconfig import ConfigSettings, make_config, make_manifest, parse_command, parse_pairs, timestamp
from .layercache import LayerCache
from .layers import (
    MAX_TOTAL_LAYERS,
    Compression,
    LayerBlob,
    LayerFiles,
    assign,
    find_units,
    group,
    parse_compression,
    write_layer,
    write_layers,
)
from .outputs import write_archive, write_layout
from .refs import DEFAULT_PREFIX, ImageRef, LayoutRef, Output, oci_platform, parse_base, parse_output, parse_reference
from .registry import Credentials, Registry, new_client, push_referrer

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("pixi_pack_ci")

#: Opens a blob's bytes for an upload.
Opener = Callable[[], BinaryIO]


@dataclass
class ImageRequest:
    """The ``image`` command's flags, checked."""

    environment: str
    platforms: list[str]
    base: ImageRef | LayoutRef | None
    prefix: PurePosixPath
    activation: str
    layers: str
    max_layers: int
    compression: Compression
    settings: ConfigSettings
    outputs: list[Output] = field(default_factory=list)
    pushes: list[ImageRef] = field(default_factory=list)
    additions: list[Addition] = field(default_factory=list)
    #: ``--use-cache``: packages, and the layers made of them.
    cache_dir: Path | None = None
    #: ``--registry-username`` and the password from standard input: for the ``--push`` registries.
    push_credentials: Credentials | None = None


def parse_request(args: argparse.Namespace) -> ImageRequest:
    """Every flag, before any work: a bad one is one line and nothing is written."""
    if not args.output and not args.push:
        raise ImageUsageError(
            "say where the image goes: --output oci-layout:DIR, --output oci-archive:FILE.tar or --push REF"
        )
    if args.base is None:
        raise ImageUsageError("name a base: --base scratch, --base oci-layout:DIR[:TAG] or --base REGISTRY/REPO:TAG")
    environment = args.environment or "default"
    prefix = PurePosixPath(args.prefix or DEFAULT_PREFIX.format(env=environment))
    if not prefix.is_absolute() or ".." in prefix.parts or str(prefix) == "/":
        raise ImageUsageError(f"--prefix {prefix}: an absolute path below / in the image")
    if args.max_layers < 1 or args.max_layers > MAX_TOTAL_LAYERS:
        raise ImageUsageError(f"--max-layers {args.max_layers}: between 1 and {MAX_TOTAL_LAYERS}")
    pushes = [parse_reference(p, what="--push reference") for p in args.push or []]
    if any(p.digest for p in pushes):
        raise ImageUsageError("--push takes REGISTRY/REPO[:TAG]; the digest is the image's own")
    settings = ConfigSettings(
        entrypoint=parse_command(args.entrypoint, "--entrypoint"),
        cmd=parse_command(args.cmd, "--cmd"),
        workdir=args.workdir,
        user=args.user,
        env=parse_pairs(args.env, "--env"),
        labels=parse_pairs(args.label, "--label"),
        annotations=parse_pairs(args.annotation, "--annotation"),
    )
    return ImageRequest(
        environment,
        list(dict.fromkeys(args.platform or [])),
        parse_base(args.base),
        prefix,
        args.activation,
        args.layers,
        args.max_layers,
        parse_compression(args.compression),
        settings,
        [parse_output(o) for o in args.output or []],
        pushes,
        [parse_add(a) for a in args.add or []],
        args.use_cache,
        _push_credentials(args),
    )


def _push_credentials(args: argparse.Namespace) -> Credentials | None:
    """``--registry-username`` with ``--registry-password-stdin`` (as ``docker login`` takes them:
    a password on the command line would be in the process list and shell history)."""
    if args.registry_username is None and not args.registry_password_stdin:
        return None
    if args.registry_username is None or not args.registry_password_stdin:
        raise ImageUsageError("--registry-username and --registry-password-stdin go together")
    if not args.push:
        raise ImageUsageError("--registry-username is for the registries of --push")
    password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise ImageUsageError("--registry-password-stdin: standard input gave no password")
    return Credentials(args.registry_username, password)


def image_time(newest: int) -> int:
    """``SOURCE_DATE_EPOCH``, else the newest package's build time (apko's rule), else 0."""
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None or value == "":
        return newest
    if not value.isdigit():
        raise ImageUsageError(f"SOURCE_DATE_EPOCH={value!r} is not a number of seconds")
    return int(value)


@dataclass
class BuiltImage:
    platform: str
    manifest: Descriptor
    config: Descriptor
    layers: list[Descriptor]
    base: BaseImage
    #: Layer digest → what it holds.
    contents: dict[str, str]
    #: The environment was installed in this run (else every layer came from its record in the layer cache).
    installed: bool = True

    @property
    def blobs(self) -> list[str]:
        return [self.config.digest, *(layer.digest for layer in self.layers), self.manifest.digest]


class Builder:
    """One run: the blob store, the registries it talks to, the images built."""

    def __init__(self, request: ImageRequest, work: Path, plugins: PluginManager, options: ImageOptions) -> None:
        self.request = request
        self.plugins = plugins
        self.options = options
        self.work = work
        self.store = BlobStore(work / "store")
        #: Made when a registry is first needed: its TLS set-up is start-up a local build never needs.
        self.client: httpx.Client | None = None
        self.registries: dict[str, Registry] = {}
        #: Layers taken from the layer cache, for the output.
        self.cached: set[str] = set()
        #: (platform, layout before) → the layers after the plugins' say (``plugin_plan``).
        self.plugin_plans: dict[tuple[str, str], list[ImageLayer]] = {}

    def registry(self, ref: ImageRef) -> Registry:
        if ref.registry not in self.registries:
            if self.client is None:
                self.client = new_client()
            # The flags' and the environment's credentials name no registry: they go to the
            # --push registries only (a base's among them when it is on one).
            pushed = ref.registry in {p.registry for p in self.request.pushes}
            self.registries[ref.registry] = Registry(
                ref.registry,
                ref.api,
                self.client,
                plugins=self.plugins.registry_credentials,
                credentials=self.request.push_credentials if pushed else None,
                pushed=pushed,
            )
        return self.registries[ref.registry]

    def resolve_base(self, platform: dict[str, str]) -> BaseImage:
        base = self.request.base
        if base is None:
            return BaseImage()
        if isinstance(base, LayoutRef):
            return layout_base(base, platform, self.store)
        return registry_base(base, platform, self.registry(base))

    def build(self, source: env_mod.EnvironmentSource, index: int) -> BuiltImage:
        platform = oci_platform(source.platform)
        base = self.resolve_base(platform)
        request = self.request
        epoch = image_time(source.newest_timestamp)
        below = len(base.layers) + len(request.additions)
        budget = self.layer_budget(below)
        cache = LayerCache(request.cache_dir, request.compression) if request.cache_dir is not None else None
        key = cache.environment_key(self.environment_inputs(source, epoch, budget)) if cache is not None else None
        recalled = self.recall(cache, key, source, below) if cache is not None and key is not None else None
        if recalled is not None:
            blobs, activation = recalled
            entrypoint = self.entrypoint(activation, base)
            log.info("%s: every environment layer from the layer cache; nothing installed", source.platform)
        else:
            blobs, activation, entrypoint = self.install(source, index, base, epoch, below, budget, cache, key)
        for addition in request.additions:  # after the environment: what changes most comes last
            added, paths = addition_files(addition, self.work / f"install-{index}", epoch)
            blobs.append(write_layer(added, paths, self.store, request.compression, f"files at {addition.dest}"))
        env = env_mod.activation_env(
            activation.env_vars,
            request.prefix,
            request.environment,
            list((base.config.get("config") or {}).get("Env") or []),
        )
        created = timestamp(epoch)
        history = [{"created": created, "created_by": "pixi-pack-ci image", "comment": b.comment} for b in blobs]
        config = make_config(
            base.config,
            platform,
            env,
            request.settings,
            None if entrypoint is None else str(entrypoint),
            [b.diff_id for b in blobs],
            history,
            created,
        )
        config_desc = self.store.put_json(config, "application/vnd.oci.image.config.v1+json")
        layers = [*base.layers, *(b.descriptor for b in blobs)]
        annotations = {"org.opencontainers.image.created": created, **base.annotations, **request.settings.annotations}
        manifest = self.store.put_json(make_manifest(config_desc, layers, annotations), MANIFEST, platform=platform)
        shutil.rmtree(self.work / f"install-{index}", ignore_errors=True)
        contents = {b.descriptor.digest: b.comment for b in blobs}
        self.cached.update(b.descriptor.digest for b in blobs if b.cached)
        return BuiltImage(source.platform, manifest, config_desc, layers, base, contents, recalled is None)

    def layer_budget(self, below: int) -> int:
        """How many environment layers this image may have: ``--max-layers``, fewer when the base's
        layers (and ``--add``'s) leave less room under 100. ``auto`` and ``single`` fit in it;
        ``per-package`` is refused past it."""
        room = MAX_TOTAL_LAYERS - below
        if room < 1:
            raise ImageError(
                f"{_below(self.request, below)} leave no room for the environment under {MAX_TOTAL_LAYERS} layers"
            )
        return min(self.request.max_layers, room)

    def environment_inputs(self, source: env_mod.EnvironmentSource, epoch: int, budget: int) -> dict[str, Any]:
        """Everything the installed environment, its activation facts and its layer plan (before
        the plugins) depend on, for the environment record's key; the layer cache adds its salt
        (format, compression and its version, py-rattler's version). The base, ``--env`` and the
        other config flags are not here: they go into the config, made afresh every run.

        Each package is its whole record (its archive's sha256 says its files) but for ``url`` and
        ``channel``: where this machine keeps the archive, which ``conda-meta`` never shows (both
        are rewritten from ``urls``). Each wheel is its sha256: the one the fetch checked it
        against, else read from the file."""
        request = self.request
        local = ("url", "channel")
        return {
            "version": __version__,
            "platform": source.platform,
            "prefix": str(request.prefix),
            "activation": request.activation,
            "layers": request.layers,
            # The layer plan's own limit: a record made on a base of fewer layers is not for this one.
            "max_layers": budget,
            "epoch": epoch,
            "records": [
                {k: v for k, v in d.items() if k not in local or d.get("fn") not in source.urls}
                for d in source.record_dicts
            ],
            "urls": source.urls,
            "wheels": [[w.name, source.wheel_sha256.get(w.name) or file_digest(w, "sha256")] for w in source.wheels],
        }

    def recall(
        self, cache: LayerCache, key: str, source: env_mod.EnvironmentSource, below: int
    ) -> tuple[list[LayerBlob], env_mod.Activation] | None:
        """The environment's layers and activation facts from its record in the layer cache, with
        no install: only when the record is this user's (its MAC), the plugins lay out the recorded
        plan as they did then, and every layer is still in the cache with its digest."""
        body = cache.recall_environment(key)
        if body is None:
            return None
        try:
            activation = env_mod.Activation.from_json(body["activation"])
            plan = [ImageLayer([str(p) for p in paths], str(what), int(at)) for paths, what, at in body["plan"]]
            layout, recorded = str(body["layout"]), [(str(d), str(i), int(n)) for d, i, n in body["layers"]]
        except (KeyError, TypeError, ValueError):
            return None
        plan = self.plugin_plan(plan, source.platform, below)
        if _layout(plan) != layout or len(plan) != len(recorded):
            return None  # a plugin lays it out otherwise now: installed and written afresh
        blobs = cache.take([(*r, layer.comment) for r, layer in zip(recorded, plan, strict=True)], self.store)
        if blobs is None:
            log.info("a layer of the environment record is gone or changed; installing the environment")
            return None
        return blobs, activation

    def install(
        self,
        source: env_mod.EnvironmentSource,
        index: int,
        base: BaseImage,
        epoch: int,
        below: int,
        budget: int,
        cache: LayerCache | None,
        key: str | None,
    ) -> tuple[list[LayerBlob], env_mod.Activation, PurePosixPath | None]:
        """Install the environment, lay it out and write its layers (the package layers from the
        layer cache when it has them); then record it all, so an unchanged rebuild installs nothing."""
        request = self.request
        started = time.time() - 2  # file times have a coarser grain on some file systems
        root = env_mod.install(source, self.work / f"install-{index}", request.prefix)
        activation = env_mod.Activation.of(root)
        entrypoint = self.entrypoint(activation, base)
        if entrypoint is not None:
            env_mod.write_entrypoint(root, request.prefix)
        before, top = self.plan_layers(root, source, epoch, budget, below)
        plan = self.plugin_plan(before, source.platform, below)
        files = LayerFiles(root, request.prefix, epoch, started)

        def cacheable(layer: ImageLayer) -> bool:
            return top.isdisjoint(layer.paths)

        blobs = write_layers(files, plan, self.store, request.compression, cache, cacheable)
        if cache is not None and key is not None:
            body = {
                "activation": activation.to_json(),
                "plan": [[layer.paths, layer.comment, layer.time] for layer in before],
                "layout": _layout(plan),
                "layers": [[b.descriptor.digest, b.diff_id, b.descriptor.size] for b in blobs],
            }
            # The cacheable layers are in the cache already (taken from it, or put there when written).
            fresh = [b for layer, b in zip(plan, blobs, strict=True) if not cacheable(layer)]
            cache.remember_environment(key, body, fresh, self.store)
        return blobs, activation, entrypoint

    def entrypoint(self, activation: env_mod.Activation, base: BaseImage) -> PurePosixPath | None:
        """The config's entrypoint under ``--activation`` (the script's path in the image), or None."""
        request = self.request
        script = request.activation == "script" or (request.activation == "auto" and activation.scripts)
        if activation.scripts and not script:
            log.warning("packages ship etc/conda/activate.d scripts; --activation env does not run them")
        if not script:
            return None
        if not base.layers and not activation.bash:  # scratch: no /bin/sh either
            raise ImageError(
                "--activation script needs a shell: --base scratch has no /bin/sh and the environment no bash"
            )
        return request.prefix / env_mod.ENTRYPOINT

    def plan_layers(
        self, root: Path, source: env_mod.EnvironmentSource, epoch: int, budget: int, below: int
    ) -> tuple[list[ImageLayer], set[str]]:
        """Package layers (each at its newest package's time, never after ``epoch``), then the
        top layer (at ``epoch``), before the plugins' say, ``budget`` layers at most; and the
        paths of no single package (layers holding any are never cached on their own)."""
        units = find_units(root, source.record_dicts)
        top = assign(root, units)
        limit = "" if budget == self.request.max_layers else f"the {budget} left beside {_below(self.request, below)}"
        groups = [g for g in group(units, self.request.layers, budget, limit) if g]
        if self.request.layers == "single" or budget < 2:
            merged = sorted({p for g in groups for u in g for p in u.paths} | set(top))
            plan = [ImageLayer(merged, "environment", epoch)]
        else:
            plan = [
                ImageLayer(
                    sorted(p for u in g for p in u.paths),
                    ", ".join(u.name for u in g),
                    min(epoch, max(u.timestamp for u in g)),
                )
                for g in groups
            ]
            if top:
                plan.append(ImageLayer(top, "environment files of no single package", epoch))
        return plan, set(top)

    def plugin_plan(self, before: list[ImageLayer], platform: str, below: int) -> list[ImageLayer]:
        """The plugins' say (``pixi_pack_ci_image_layers``) on a copy of ``before``, checked: every
        path in one layer, at most 100 layers with the ``below`` ones. Asked once per plan: a
        record whose layers are gone is installed and laid out again with the same answer."""
        asked = (platform, _layout(before))
        if asked not in self.plugin_plans:
            plan = [ImageLayer(list(layer.paths), layer.comment, layer.time) for layer in before]
            self.plugins.image_layers(plan, platform, self.options)
            plan = [layer for layer in plan if layer.paths]
            every = sorted(p for layer in before for p in layer.paths)
            if sorted(p for layer in plan for p in layer.paths) != every:
                raise ImageError(
                    "a plugin's layering lost or repeated paths of the environment; every path must be in one layer"
                )
            self.plugin_plans[asked] = plan
        plan = [ImageLayer(list(layer.paths), layer.comment, layer.time) for layer in self.plugin_plans[asked]]
        if below + len(plan) > MAX_TOTAL_LAYERS:
            raise ImageError(
                f"the image would have {below + len(plan)} layers ({below} from the base), more than "
                f"{MAX_TOTAL_LAYERS}; lower --max-layers"
            )
        return plan

    def top(self, images: list[BuiltImage]) -> tuple[Descriptor, list[str]]:
        """The manifest of a single image, else an index of them; and every blob to write."""
        blobs = [d for image in images for d in image.blobs]
        if len(images) == 1:
            return images[0].manifest, blobs
        index = {"schemaVersion": 2, "mediaType": INDEX, "manifests": [i.manifest.to_json() for i in images]}
        descriptor = self.store.put_json(index, INDEX)
        return descriptor, [*blobs, descriptor.digest]

    def close(self) -> None:
        if self.client is not None:
            self.client.close()


def write_outputs(builder: Builder, images: list[BuiltImage], top: Descriptor, blobs: list[str]) -> None:
    if not builder.request.outputs:
        return
    for image in images:
        fetch_base_layers(image.base, builder.store)
    for output in builder.request.outputs:
        if output.kind == "oci-layout":
            write_layout(output.path, builder.store, top, blobs, output.tag, output.name)
        else:
            manifests = [i.manifest for i in images]
            write_archive(output.path, builder.store, top, manifests, blobs, output.tag, output.name)


def push(builder: Builder, images: list[BuiltImage], top: Descriptor, ref: ImageRef) -> dict[str, Any]:
    """Blobs, four at a time (base layers mounted from the base's repository on the same
    registry), then an index's manifests by digest, and last the top manifest or index, by tag
    (or by digest without one): a failure never leaves a tag behind."""
    registry = builder.registry(ref)
    store = builder.store
    jobs: dict[str, tuple[int, str | None, Opener]] = {}  # digest → (size, repository to mount from, opener)
    for image in images:
        remote = image.base.remote
        # On the base's own registry its layers are mounted; a base layer the registry lacks
        # and will not mount (from elsewhere: no mount to try) is fetched when it must go up,
        # passing through this machine once.
        same = remote is not None and remote.registry == ref.registry
        mount = remote.repository if same and remote is not None and remote.repository != ref.repository else None
        for layer in image.base.layers:
            jobs.setdefault(layer.digest, (layer.size, mount, _base_opener(image.base, layer, store)))
        for descriptor in [image.config, *image.layers[len(image.base.layers) :]]:
            jobs.setdefault(descriptor.digest, (descriptor.size, None, _opener(store, descriptor.digest)))
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="push") as pool:
        outcomes = list(
            pool.map(
                lambda job: registry.push_blob(ref.repository, job[0], job[1][0], job[1][2], job[1][1]),
                jobs.items(),
            )
        )
    if len(images) > 1:  # an index's manifests by digest, before the index that names them
        for image in images:
            manifest = store.path(image.manifest.digest).read_bytes()
            registry.put_manifest(ref.repository, image.manifest.digest, manifest, MANIFEST)
    # The top once: by tag (a registry keeps it by digest too), else by digest. After every
    # blob and child, so a failed push leaves no tag; an unchanged push costs a HEAD per blob
    # and this one PUT for a single-platform image.
    data = store.path(top.digest).read_bytes()
    registry.put_manifest(ref.repository, ref.tag or top.digest, data, top.media_type)
    return {"reference": f"{ref.name}@{top.digest}", "tag": ref.tag, "blobs": dict(Counter(outcomes))}


def _below(request: ImageRequest, below: int) -> str:
    """The layers that are not the environment's, said as a user knows them."""
    added = len(request.additions)
    text = f"the base's {below - added} layers"
    return f"{text} and --add's {added}" if added else text


def _layout(plan: list[ImageLayer]) -> str:
    """The digest of a layer plan: every layer's paths, comment and time, in order."""
    return hashlib.sha256(canonical_json([[layer.paths, layer.comment, layer.time] for layer in plan])).hexdigest()


def _opener(store: BlobStore, digest: str) -> Opener:
    return lambda: store.path(digest).open("rb")


def _base_opener(base: BaseImage, layer: Descriptor, store: BlobStore) -> Opener:
    """Opens a base layer, fetching it from the base's registry first when the store lacks it."""

    def opener() -> BinaryIO:
        fetch_base_layer(base, layer, store)
        return store.path(layer.digest).open("rb")

    return opener


def default_platform() -> str:
    """This machine's Linux counterpart: linux-aarch64 on ARM machines, else linux-64."""
    from rattler.platform import Subdir

    current = str(Subdir.current())
    if current.startswith("linux-"):
        return current
    return "linux-aarch64" if current.endswith(("arm64", "aarch64")) else "linux-64"


def run_image(args: argparse.Namespace, plugins: PluginManager) -> dict[str, Any]:
    """The whole command; returns what ``--json`` prints."""
    request = parse_request(args)
    if args.from_pack is None:
        for name in request.platforms:
            if name.startswith(("win-", "osx-")):
                oci_platform(name)
    work = Path(tempfile.mkdtemp(prefix="pixi-pack-ci-image."))
    options = ImageOptions(args, quiet=args.quiet)
    builder = Builder(request, work, plugins, options)
    try:
        with ExitStack() as stack:
            sources = _sources(args, request, plugins, work, stack)
            images = [builder.build(source, i) for i, source in enumerate(sources)]
            top, blobs = builder.top(images)
            write_outputs(builder, images, top, blobs)
            pushed = [push(builder, images, top, ref) for ref in request.pushes]
            plugins.images_written([_result(builder, sources, top)], options)
        return {**_report(request, images, top, pushed, builder.cached), **options.report}
    finally:
        builder.close()
        shutil.rmtree(work, ignore_errors=True)


def _result(builder: Builder, sources: list[env_mod.EnvironmentSource], top: Descriptor) -> ImageResult:
    """The image for plugins; ``attach`` pushes a referrer of it to every repository it went to."""
    request = builder.request

    def attach(artifact_type: str, data: bytes, annotations: dict[str, str]) -> list[str]:
        subject = Descriptor(top.media_type, top.digest, top.size).to_json()
        refs = dict.fromkeys(ImageRef(r.registry, r.repository) for r in request.pushes)
        return [
            f"{r.name}@{push_referrer(builder.registry(r), r.repository, subject, artifact_type, data, annotations)}"
            for r in refs
        ]

    return ImageResult(
        digest=top.digest,
        media_type=top.media_type,
        platforms=tuple(s.platform for s in sources),
        names=tuple(dict.fromkeys(r.name for r in request.pushes)),
        outputs=tuple(o.path for o in request.outputs),
        packages=tuple(p for s in sources for p in s.packages),
        lockfile=sources[0].lockfile if sources else None,
        compression=request.compression.describe(),
        compressor=request.compression.compressor(),
        attach=attach if request.pushes else None,
    )


def _sources(
    args: argparse.Namespace, request: ImageRequest, plugins: PluginManager, work: Path, stack: ExitStack
) -> list[env_mod.EnvironmentSource]:
    if args.from_pack is not None:
        source = env_mod.from_pack(args.from_pack, work)
        oci_platform(source.platform)
        if request.platforms and request.platforms != [source.platform]:
            raise ImageUsageError(
                f"the pack is for {source.platform}; -p {' '.join(request.platforms)} does not match it"
            )
        source.environment = request.environment
        return [source]
    options = PackOptions(
        manifest_path=Path(args.manifest_path),
        environments=[request.environment],
        platforms=request.platforms or [default_platform()],
        cache_dir=args.use_cache,
        config_path=args.config,
        auth_file=args.auth_file,
        inject=list(args.inject or []),
        no_build=args.no_build,
        ignore_pypi_non_wheel=args.ignore_pypi_non_wheel,
        output_dir=work / "plans",
        quiet=args.quiet,
        args=args,
    )
    return stack.enter_context(env_mod.from_lockfile(options, plugins, work, check=lambda p: oci_platform(p.platform)))


def _report(
    request: ImageRequest, images: list[BuiltImage], top: Descriptor, pushed: list[dict[str, Any]], cached: set[str]
) -> dict[str, Any]:
    return {
        "digest": top.digest,
        "media_type": top.media_type,
        "images": [
            {
                "platform": i.platform,
                "digest": i.manifest.digest,
                "config_digest": i.config.digest,
                "installed": i.installed,
                "layers": [
                    {
                        "digest": d.digest,
                        "size": d.size,
                        "contents": i.contents.get(d.digest, "base"),
                        "cached": d.digest in cached,
                    }
                    for d in i.layers
                ],
            }
            for i in images
        ],
        "outputs": [
            {"kind": o.kind, "path": str(o.path), "tag": o.tag, "name": str(o.name) if o.name else None}
            for o in request.outputs
        ],
        "pushed": pushed,
        "compression": request.compression.describe(),
    }
