"""The GitLab template's image job: its ``PIXI_PACK_*`` variables become one ``pixi-pack-ci image``
command (``pixi-pack-ci gitlab-image``), and the image's digest and references a dotenv report.

The template hands every input to the job through ``variables:``, never through the script, so no
input reaches a shell; the checks and the command line are made here, where they are tested.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path

from pixi_pack_ci.core import ImageResult, UsageError, image_platforms
from pixi_pack_ci.plugins.provenance.checksums import write_text_atomically

from .job import _relative

#: The download cache of the pack jobs (``cache:paths`` of the template); ``image`` keeps its
#: layer cache in it too.
CACHE_DIR = ".pixi-pack-cache"
ENVIRONMENT_PLACEHOLDER = "{environment}"


def input_list(value: str) -> list[str]:
    """An array input as the job sees it: the template puts ``$[[ inputs.x ]]`` inside a string,
    which GitLab renders as Ruby prints an array (``["a", "b"]``, read as JSON) and gitlab-ci-local
    as ``a,b``; flow style (``[a, b]``) and whitespace work too. Items (environments, platforms,
    image references) hold no comma, bracket, quote or space, so every form reads the same."""
    text = value.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            text = text[1:].removesuffix("]")
        else:
            if isinstance(parsed, list):
                return [str(item).strip() for item in parsed if str(item).strip()]
    items = (item.strip().strip("'\"") for item in re.split(r"[,\s]+", text))
    return [item for item in items if item]


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    value = env.get(name, "").strip().lower()
    if not value:
        return default
    if value not in ("true", "false"):
        raise UsageError(f"{name} must be true or false, got {value!r}")
    return value == "true"


def image_arguments(env: Mapping[str, str]) -> list[str]:
    """The ``pixi-pack-ci image`` command line of one environment's image job. Every input is
    checked first, each failure one line naming the input."""
    environment = env.get("PIXI_PACK_ENVIRONMENT", "").strip() or "default"
    base = env.get("PIXI_PACK_IMAGE_BASE", "").strip()
    if not base:
        raise UsageError(
            "image-base is required with build-image: scratch, oci-layout:DIR[:TAG] or REGISTRY/REPO[:TAG] "
            "(there is no default base)"
        )
    requested = input_list(env.get("PIXI_PACK_PLATFORMS", "")) or ["linux-64"]
    platforms = image_platforms(requested)
    if not platforms:
        raise UsageError(f"build-image needs a Linux platform in platforms, got {', '.join(requested)}")
    push = _flag(env, "PIXI_PACK_IMAGE_PUSH", default=True)
    tags = input_list(env.get("PIXI_PACK_IMAGE_TAGS", ""))
    if push and not tags:
        raise UsageError("image-tags is empty: give REGISTRY/REPO[:TAG] to push to, or set image-push to false")
    if not push and tags and tags[0].startswith(("/", ":")):
        # Not pushing, with the default tags while the container registry is off: nothing to name
        # the archive after, and nothing to refuse.
        tags = []
    environments = input_list(env.get("PIXI_PACK_ENVIRONMENTS", "")) or [environment]
    # Pushed to every tag; the archive is named after the first (not pushing, only that one counts).
    for tag in tags if push else tags[:1]:
        if len(environments) > 1 and ENVIRONMENT_PLACEHOLDER not in tag:
            raise UsageError(
                f"image-tags: {tag} has no {ENVIRONMENT_PLACEHOLDER}: with several environments "
                f"({', '.join(environments)}) each image would overwrite the others'"
            )
        if tag.startswith(("/", ":")):
            raise UsageError(
                f"image-tags: {tag} has no registry: is $CI_REGISTRY_IMAGE empty (container registry off)?"
            )
    try:
        extra = shlex.split(env.get("PIXI_PACK_IMAGE_ARGS", ""))
    except ValueError as exc:
        raise UsageError(f"image-args: {exc}") from None

    output_dir = Path(env.get("PIXI_PACK_OUTPUT_DIR", "").strip() or "pixi-packs")
    argv = ["image", env.get("PIXI_PACK_MANIFEST", "").strip() or ".", "-e", environment, "--base", base]
    for platform in platforms:
        argv += ["-p", platform]
    # The pack jobs' cache folder (cache:paths), in the build folder.
    argv += ["--use-cache", str(Path(CACHE_DIR).absolute())]
    # The archive carries the first tag's name, pushed or not, so that docker load and podman load
    # give the image that name (image never names an archive after a --push by itself).
    name = f":{tags[0].replace(ENVIRONMENT_PLACEHOLDER, environment)}" if tags else ""
    argv += ["--output", f"oci-archive:{output_dir / f'{environment}-image.tar'}{name}"]
    for tag in tags if push else []:
        argv += ["--push", tag.replace(ENVIRONMENT_PLACEHOLDER, environment)]
    for file in env.get("PIXI_PACK_INJECT", "").split():
        argv += ["--inject", file]
    if _flag(env, "PIXI_PACK_IGNORE_PYPI_NON_WHEEL", default=False):
        argv.append("--ignore-pypi-non-wheel")
    if _flag(env, "PIXI_PACK_NO_BUILD", default=False):
        argv.append("--no-build")
    if config := env.get("PIXI_PACK_CONFIG", "").strip():
        argv += ["--config", config]
    if _flag(env, "PIXI_PACK_ATTEST", default=False):
        argv.append("--attest")
    # The user's flags last, so that theirs win where a flag takes one value (argparse keeps the last).
    return argv + extra


def _suffix(environment: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "_", environment.upper()).strip("_")


def image_dotenv(images: Sequence[ImageResult], environment: str) -> dict[str, str]:
    """``PIXI_PACK_IMAGE_DIGEST``, ``_REF`` (the first push as ``REGISTRY/REPO@sha256:…``, empty
    without one), ``_REFS`` (every push, space-separated) and ``_PATH`` (the first archive or
    layout written); digest and ref again with the environment's name (``…_DIGEST_PROD``), since
    a later job that needs several matrix jobs gets one value per name: the last job's."""
    image = images[0] if images else None
    refs = [f"{name}@{i.digest}" for i in images for name in i.names]
    values = {
        "PIXI_PACK_IMAGE_DIGEST": image.digest if image else "",
        "PIXI_PACK_IMAGE_REF": refs[0] if refs else "",
        "PIXI_PACK_IMAGE_REFS": " ".join(refs),
        "PIXI_PACK_IMAGE_PATH": _relative(image.outputs[0]) if image and image.outputs else "",
    }
    suffix = _suffix(environment)
    if suffix:
        values[f"PIXI_PACK_IMAGE_DIGEST_{suffix}"] = values["PIXI_PACK_IMAGE_DIGEST"]
        values[f"PIXI_PACK_IMAGE_REF_{suffix}"] = values["PIXI_PACK_IMAGE_REF"]
    return values


def write_image_dotenv(values: Mapping[str, str], path: Path) -> None:
    """Into the dotenv report, keeping the lines of others (a job that packs and builds an image
    with the same report file keeps both)."""
    kept = []
    if path.exists():
        kept = [line for line in path.read_text().splitlines() if line and not line.startswith("PIXI_PACK_IMAGE_")]
    write_text_atomically(path, "\n".join([*kept, *(f"{k}={v}" for k, v in values.items())]) + "\n")
