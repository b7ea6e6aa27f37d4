"""The provenance plugin: ``pack --attest``, ``attest``, ``verify``, ``keygen``, ``unpack --verify-bundle``."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pluggy
from pixi_pack_ci.core import (
    ImageOptions,
    ImageResult,
    PackOptions,
    PackPlan,
    PackResult,
    UsageError,
    __version__,
    hookimpl,
    inspect_pack,
    is_image_target,
)

from . import hookspecs
from .attest import SigningRequest, attest_files, bundle_path_for
from .checksums import file_sha256, hashes_value, subjects_for, write_checksums
from .errors import ProvenanceError
from .generator import SourceRequirements, verify_generator_provenance
from .images import sign_image
from .keyed import PASSPHRASE_ENV, generate_key_pair
from .model import SLSA_PROVENANCE_V1, Attestation, BuildDescription
from .statement import local_build_description, lockfile_dependency, pack_inputs, package_dependencies
from .verification import BundleCheck, IdentityRequirements, verify_image, verify_pack

_VERIFY_FLAGS = ("repo", "owner", "signer_workflow", "cert_identity", "cert_oidc_issuer", "source_ref")


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _add_identity_flags(parser: argparse.ArgumentParser, *, prefix_help: str = "") -> None:
    group = parser.add_argument_group(f"{prefix_help}signature checks")
    group.add_argument("--repo", metavar="OWNER/REPO", help="the source repository (or its URL, for GitLab)")
    group.add_argument("--owner", metavar="OWNER", help="the repository owner (or its URL)")
    group.add_argument(
        "--signer-workflow", metavar="[HOST/]OWNER/REPO/PATH", help="the workflow that signed (any ref after @)"
    )
    group.add_argument("--cert-identity", metavar="URI", help="the exact certificate identity (SAN)")
    group.add_argument(
        "--cert-oidc-issuer", metavar="URL", help="the OIDC issuer (default: GitHub Actions', or the repo URL's host)"
    )
    group.add_argument("--source-ref", metavar="REF", help="the git ref built, e.g. refs/tags/v1.2.0")
    group.add_argument(
        "--trusted-root",
        type=Path,
        metavar="FILE",
        help="Sigstore trusted root (.json or gh's .jsonl), for offline use",
    )
    group.add_argument("--offline", action="store_true", help="use the cached/embedded production trusted root")
    group.add_argument("--key", type=Path, metavar="PUB", help="verify a key-signed bundle with this public key")


def _add_generator_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "slsa-github-generator provenance (slsa-verifier's flags; the packs must be subjects of it)"
    )
    group.add_argument("--provenance-path", type=Path, metavar="FILE", help="e.g. multiple.intoto.jsonl")
    group.add_argument("--source-uri", metavar="github.com/OWNER/REPO", help="the repository the packs were built from")
    refs = group.add_mutually_exclusive_group()
    refs.add_argument("--source-tag", metavar="TAG", help="built from exactly this tag, e.g. v1.2.0")
    refs.add_argument("--source-branch", metavar="BRANCH", help="built from this branch")
    refs.add_argument("--source-versioned-tag", metavar="VERSION", help="built from a tag of this version, e.g. v1")
    group.add_argument(
        "--builder-id", metavar="ID[@REF]", help="the generator workflow, e.g. pinned to @refs/tags/v2.1.0"
    )


_GENERATOR_FLAGS = (
    "provenance_path",
    "source_uri",
    "source_tag",
    "source_branch",
    "source_versioned_tag",
    "builder_id",
)


#: Another Sigstore instance for every signing command (private deployments; CI templates set it).
TRUST_CONFIG_ENV = "PIXI_PACK_CI_SIGSTORE_TRUST_CONFIG"


def _trust_config_from_env() -> Path | None:
    value = os.environ.get(TRUST_CONFIG_ENV)
    return Path(value) if value else None


def _requirements(args: argparse.Namespace) -> IdentityRequirements:
    return IdentityRequirements(**{name: getattr(args, name, None) for name in _VERIFY_FLAGS})


def _bundle_check(args: argparse.Namespace) -> BundleCheck:
    """The signer and predicate type ``verify`` (or ``unpack --verify-bundle``) asks for."""
    predicate_type = getattr(args, "predicate_type", None) or SLSA_PROVENANCE_V1
    return BundleCheck(_requirements(args), args.key, args.trusted_root, args.offline, predicate_type)


class ProvenancePlugin:
    """Signs packs and images (Sigstore keyless or a key) with SLSA v1 provenance, and verifies them."""

    def __init__(self) -> None:
        self._pm: pluggy.PluginManager | None = None
        self._preflighted: set[int] = set()

    # --- hooks of the core -------------------------------------------------------------------

    @hookimpl
    def pixi_pack_ci_add_hookspecs(self, pluginmanager: pluggy.PluginManager) -> None:
        pluginmanager.add_hookspecs(hookspecs)
        self._pm = pluginmanager

    @hookimpl
    def pixi_pack_ci_add_arguments(self, parser: argparse.ArgumentParser, command: str) -> None:
        if command in ("pack", "image"):
            group = parser.add_argument_group("provenance")
            group.add_argument(
                "--attest",
                action="store_true",
                help=f"sign the {'images' if command == 'image' else 'packs'} with SLSA v1 provenance"
                " (keyless from the CI's OIDC identity)",
            )
            group.add_argument(
                "--sign-key",
                type=Path,
                metavar="KEY",
                help=f"sign with this ECDSA P-256 key instead (${PASSPHRASE_ENV})",
            )
            group.add_argument(
                "--sigstore-trust-config",
                type=Path,
                default=_trust_config_from_env(),
                metavar="FILE",
                help=f"Sigstore ClientTrustConfig JSON of another instance (default ${TRUST_CONFIG_ENV} or production)",
            )
            if command == "image":  # an image's digest is its checksum
                return
            group.add_argument(
                "--checksums",
                action="store_true",
                help="write SHA256SUMS and print the base64 hashes (implied by --attest)",
            )
        elif command == "unpack":
            parser.add_argument(
                "--verify-bundle",
                type=Path,
                metavar="BUNDLE",
                help="verify the pack against this bundle before unpacking",
            )
            _add_identity_flags(parser, prefix_help="--verify-bundle ")

    @hookimpl
    def pixi_pack_ci_add_commands(self, subparsers: Any) -> None:
        attest = subparsers.add_parser("attest", help="sign existing packs with SLSA v1 provenance")
        attest.add_argument("packs", nargs="+", type=Path, metavar="PACK")
        attest.add_argument("--sign-key", type=Path, metavar="KEY", help="sign with this ECDSA P-256 key")
        attest.add_argument(
            "--sigstore-trust-config",
            type=Path,
            default=_trust_config_from_env(),
            metavar="FILE",
            help=f"Sigstore ClientTrustConfig JSON (default ${TRUST_CONFIG_ENV} or production)",
        )
        attest.add_argument("--lockfile", type=Path, metavar="LOCK", help="record this pixi.lock's digest as an input")
        attest.add_argument("--json", action="store_true", help="print the result as JSON")
        attest.add_argument("-q", "--quiet", action="store_true")
        attest.set_defaults(handler=self._cmd_attest)

        verify = subparsers.add_parser("verify", help="verify a pack's or image's signature, signer and digest")
        verify.add_argument(
            "packs",
            nargs="+",
            metavar="PACK",
            help="the pack (several with --provenance-path), or an image: oci://REGISTRY/REPO[:TAG|@DIGEST] "
            "(its referrers), oci-layout:DIR[:TAG] or oci-archive:FILE.tar[:TAG] (the bundle beside it)",
        )
        verify.add_argument(
            "--bundle",
            type=Path,
            metavar="BUNDLE",
            help="Sigstore bundle (default: PACK.sigstore.json, or the image's own)",
        )
        verify.add_argument("--predicate-type", metavar="URI", help=f"(default: {SLSA_PROVENANCE_V1})")
        _add_identity_flags(verify)
        _add_generator_flags(verify)
        verify.add_argument("--json", action="store_true", help="print what was verified as JSON")
        verify.add_argument(
            "-v", "--verbose", action="count", default=0, help="more output: why an image's referrer was passed over"
        )
        verify.set_defaults(handler=self._cmd_verify)

        keygen = subparsers.add_parser("keygen", help="write an ECDSA P-256 key pair for offline signing")
        keygen.add_argument(
            "--output-prefix", default="pixi-pack-ci", metavar="PREFIX", help="writes PREFIX.key and PREFIX.pub"
        )
        keygen.add_argument(
            "--no-passphrase",
            action="store_true",
            help=f"leave the private key unencrypted (default: ${PASSPHRASE_ENV})",
        )
        keygen.set_defaults(handler=self._cmd_keygen)

    @hookimpl
    def pixi_pack_ci_modify_plan(self, plan: PackPlan, options: PackOptions) -> None:
        signing = self._signing_request(options.args)
        if signing is None and not getattr(options.args, "checksums", False):
            return
        if plan.output is None:
            raise UsageError("--attest/--checksums need pack files; they cannot cover a pack sent to standard output")
        if plan.kind == "directory":
            raise UsageError("--attest/--checksums cover pack files; --directory-only writes a folder")
        if signing is not None and not options.dry_run and id(options) not in self._preflighted:
            signing.preflight()  # before any download: a missing identity must not cost a full pack
            self._preflighted.add(id(options))

    @hookimpl(tryfirst=True)  # sign before CI plugins publish outputs, so they can include the bundles
    def pixi_pack_ci_packs_written(self, packs: list[PackResult], options: PackOptions) -> None:
        signing = self._signing_request(options.args)
        files = [(p.path, p.sha256) for p in packs if p.path is not None and p.sha256 is not None]
        if signing is None:
            if getattr(options.args, "checksums", False):
                base, subjects = subjects_for(files)
                path = write_checksums(base, subjects)
                options.report["checksums"] = {"path": str(path), "hashes": hashes_value(subjects)}
                if not options.quiet:
                    _say(f"🧾 Wrote {path}; hashes: {hashes_value(subjects)}")
            return
        dependencies = [lockfile_dependency(p) for p in dict.fromkeys(p.lockfile for p in packs)]
        dependencies += package_dependencies(pkg for p in packs for pkg in p.packages)
        attestation = attest_files(
            files, signing, describe_build=self._describe_build, inputs=pack_inputs(options), dependencies=dependencies
        )
        self._finish(attestation, options.report, quiet=options.quiet)

    @hookimpl(tryfirst=True)  # sign before CI plugins publish, as for packs
    def pixi_pack_ci_images_written(self, images: list[ImageResult], options: ImageOptions) -> None:
        signing = self._signing_request(options.args)
        if signing is None:
            return
        signed = [sign_image(image, signing, self._describe_build) for image in images]
        options.report["attestation"] = [a.to_json() for a in signed]
        assert self._pm is not None
        for a, entry in zip(signed, options.report["attestation"], strict=True):
            self._pm.hook.pixi_pack_ci_provenance_signed(attestation=a.attestation(), report=entry)
        if not options.quiet:
            for a in signed:
                how = f"keyless as {a.signer}" if a.keyless else f"with key {a.signer[:16]}"
                _say(f"🔏 Signed image {a.digest} {how}")
                for line in [*(f"   bundle: {p}" for p in a.bundle_paths), *(f"   referrer: {r}" for r in a.referrers)]:
                    _say(line)

    @hookimpl
    def pixi_pack_ci_before_unpack(self, pack: str, options: argparse.Namespace) -> None:
        bundle: Path | None = getattr(options, "verify_bundle", None)
        if bundle is None:
            given = [
                f"--{n.replace('_', '-')}" for n in (*_VERIFY_FLAGS, "trusted_root", "key") if getattr(options, n, None)
            ]
            if given:
                raise UsageError(f"{', '.join(given)} only apply with --verify-bundle")
            return
        if pack == "-":
            raise UsageError("--verify-bundle needs a pack file; standard input cannot be checked before unpacking")
        result = verify_pack(Path(pack), bundle, _bundle_check(options))
        if not getattr(options, "quiet", False):
            for line in result.lines():
                _say(line)

    # --- our own hooks' fallback -------------------------------------------------------------

    @hookimpl(trylast=True)
    def pixi_pack_ci_provenance_build(self, claims: Mapping[str, Any] | None) -> BuildDescription:
        return local_build_description()

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _signing_request(args: argparse.Namespace) -> SigningRequest | None:
        key = getattr(args, "sign_key", None)
        if not getattr(args, "attest", False) and key is None:
            return None
        return SigningRequest(sign_key=key, trust_config=getattr(args, "sigstore_trust_config", None))

    def _describe_build(self, claims: Mapping[str, Any] | None) -> BuildDescription:
        assert self._pm is not None, "the provenance plugin was used before its hooks were added"
        result = self._pm.hook.pixi_pack_ci_provenance_build(claims=claims)
        return result if isinstance(result, BuildDescription) else local_build_description()

    def _finish(self, attestation: Attestation, report: dict[str, Any], *, quiet: bool) -> None:
        assert self._pm is not None
        hashes = hashes_value(attestation.subjects)
        report["attestation"] = {**attestation.to_json(), "hashes": hashes}
        if not quiet:
            how = f"keyless as {attestation.signer}" if attestation.keyless else f"with key {attestation.signer[:16]}"
            _say(f"🔏 Signed {len(attestation.subjects)} pack(s) {how}")
            for path in attestation.bundle_paths:
                _say(f"   bundle: {path}")
            _say(f"   checksums: {attestation.checksums_path}")
            _say(f"   hashes: {hashes}")
        self._pm.hook.pixi_pack_ci_provenance_signed(attestation=attestation, report=report["attestation"])

    # --- commands ----------------------------------------------------------------------------

    def _cmd_attest(self, args: argparse.Namespace) -> int:
        request = SigningRequest(sign_key=args.sign_key, trust_config=args.sigstore_trust_config)
        files: list[tuple[Path, str]] = []
        packages: list[dict[str, Any]] = []
        platforms: dict[str, str] = {}
        for pack in args.packs:
            if not pack.is_file():
                raise ProvenanceError(f"{pack} is not a pack file")
            files.append((pack, file_sha256(pack)))
            if pack.suffix == ".tar":
                summary = inspect_pack(pack)
                platforms[pack.name] = str(summary["platform"])
                packages += summary["packages"]
        dependencies = package_dependencies(packages)  # one entry per distinct file across the packs
        if args.lockfile is not None:
            if not args.lockfile.is_file():
                raise ProvenanceError(f"lockfile {args.lockfile} does not exist")
            dependencies.insert(0, lockfile_dependency(args.lockfile))
        request.preflight()
        inputs = {"attested": [p.name for p in args.packs], "platforms": platforms, "pixiPackCiVersion": __version__}
        attestation = attest_files(
            files,
            request,
            describe_build=self._describe_build,
            inputs=inputs,
            dependencies=dependencies,
        )
        report: dict[str, Any] = {}
        self._finish(attestation, report, quiet=args.quiet or args.json)
        if args.json:
            print(json.dumps(report["attestation"], indent=2))
        else:
            print(report["attestation"]["hashes"])
        return 0

    def _cmd_verify(self, args: argparse.Namespace) -> int:
        if args.provenance_path is not None or args.source_uri is not None:
            return _verify_generator(args)
        given = [f"--{n.replace('_', '-')}" for n in _GENERATOR_FLAGS if getattr(args, n, None)]
        if given:
            raise UsageError(f"{', '.join(given)} only apply to slsa-github-generator provenance (--provenance-path)")
        if len(args.packs) > 1:
            raise UsageError("verify checks one pack against its bundle; several packs need --provenance-path")
        (target,) = args.packs
        if is_image_target(target):
            result = verify_image(target, args.bundle, _bundle_check(args))
        else:
            pack = Path(target)
            result = verify_pack(pack, args.bundle or bundle_path_for(pack), _bundle_check(args))
        if args.json:
            print(json.dumps(result.to_json(), indent=2))
        else:
            print("\n".join(result.lines()))
        return 0

    def _cmd_keygen(self, args: argparse.Namespace) -> int:
        prefix = Path(args.output_prefix)
        private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
        hint = generate_key_pair(private, public, encrypt=not args.no_passphrase)
        print(f"🔑 Wrote {private} (private, keep it secret) and {public} (public); key id {hint[:16]}")
        return 0


def _verify_generator(args: argparse.Namespace) -> int:
    """``verify PACK... --provenance-path P --source-uri github.com/O/R``, slsa-verifier's way."""
    given = [f"--{n.replace('_', '-')}" for n in (*_VERIFY_FLAGS, "key", "predicate_type") if getattr(args, n, None)]
    if given:
        raise UsageError(
            f"{', '.join(given)} do not apply to slsa-github-generator provenance: "
            "it is checked with --source-uri, --source-tag/--source-branch and --builder-id"
        )
    provenance = args.provenance_path or args.bundle
    if provenance is None:
        raise UsageError("--source-uri checks slsa-github-generator provenance: give its file with --provenance-path")
    if args.source_uri is None:
        raise UsageError("--provenance-path needs --source-uri github.com/OWNER/REPO, the repository built from")
    requirements = SourceRequirements(
        args.source_uri, args.source_tag, args.source_branch, args.source_versioned_tag, args.builder_id
    )
    result = verify_generator_provenance(
        [Path(p) for p in args.packs], provenance, requirements, trusted_root=args.trusted_root, offline=args.offline
    )
    print(json.dumps(result.to_json(), indent=2) if args.json else "\n".join(result.lines()))
    return 0
