"""Every verification command in the docs, run as written against the loopback Sigstore.

The commands are read from the ```bash blocks of README.md, docs/*.md and gitlab/README.md, so a doc
change that breaks one fails here. Each runs in a folder holding the files it names, signed the way
its signing mode says (GitHub keyless as acme/app's release.yml at v1.2.0, GitLab keyless as
acme/app's pipeline on main, a key, or slsa-github-generator's provenance), with one change: the
loopback Sigstore's trusted root is added to keyless commands (``--trusted-root``,
``--custom-trusted-root``, ``--trust-config``; a file named ``trusted_root.json`` where the command
already names one). Key commands run exactly as written: they must work offline. Each
must pass, and must fail in a copy of its folder whose packs were changed by one byte.

Two tools cannot run as written here: gh without ``--bundle`` asks GitHub's API for the
attestations (mocked by github_api_double: a proxy for api.github.com that lists what ``attest``
uploaded), and slsa-verifier trusts only the live public-good TUF root, so its arguments go to
``pixi-pack-ci verify``, which implements the same checks.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from generator_double import generator_statement, parse_subjects, sign_as_generator
from github_api_double import GitHubApiProxy
from harness import make_project, run_cli
from signing import COMMIT, KEY_PASSWORD, Sigstore, github_env, gitlab_env, no_ci
from verifier_tools import ROOT, Outcome, debian_tool, run, venv_tool

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="cosign and sigstore-go come from Debian packages")

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "gitlab" / "README.md"]
#: What the README tells key users to write when cosign < 3.0.4 wants a trusted root.
EMPTY_TRUSTED_ROOT = '{"mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1"}'
PROGRAMS = ("pixi-pack-ci", "gh", "sigstore", "cosign", "sigstore-go-verification", "slsa-verifier")


@dataclass(frozen=True)
class DocCommand:
    where: str  # file:line, for messages
    argv: list[str]

    @property
    def mode(self) -> str:
        text = " ".join(self.argv)
        if "multiple.intoto.jsonl" in text or self.argv[0] == "slsa-verifier":
            return "generator"
        if "--key" in self.argv:
            return "key"
        return "gitlab" if "gitlab.com" in text else "github"


def is_verification(argv: list[str]) -> bool:
    program, rest = argv[0], argv[1:]
    if program == "pixi-pack-ci":
        return rest[:1] == ["verify"] or (rest[:1] == ["unpack"] and "--verify-bundle" in rest)
    if program == "gh":
        return rest[:2] == ["attestation", "verify"]
    if program == "sigstore":
        return "verify" in rest[:3]
    if program == "cosign":
        return bool(rest) and rest[0].startswith("verify")
    return program in ("sigstore-go-verification", "slsa-verifier")


def doc_commands() -> list[DocCommand]:
    """The verification commands of the docs' bash blocks, continuation lines joined, comments
    dropped, each once (the first place it appears)."""
    found: dict[tuple[str, ...], DocCommand] = {}
    for path in DOCS:
        fence: str | None = None
        pending, start = "", 0
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if line.startswith("```"):
                fence = None if fence is not None else line[3:].strip()
                continue
            if fence not in ("bash", "sh", "shell"):
                continue
            start = start if pending else number
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            argv, pending = shlex.split(pending + line, comments=True), ""
            if argv and is_verification(argv):
                found.setdefault(tuple(argv), DocCommand(f"{path.relative_to(ROOT)}:{start}", argv))
    return list(found.values())


def test_the_docs_give_a_command_for_every_verifier_and_signing_mode() -> None:
    commands = doc_commands()
    found = {(c.mode, c.argv[0]) for c in commands}
    keyless = ("pixi-pack-ci", "gh", "sigstore", "cosign", "sigstore-go-verification")
    expected = {
        *(("github", p) for p in keyless),
        *(("gitlab", p) for p in keyless if p != "gh"),  # gh accepts GitHub identities only
        ("key", "pixi-pack-ci"),
        ("key", "cosign"),
        *(("generator", p) for p in ("slsa-verifier", "pixi-pack-ci", "gh", "cosign")),
    }
    assert expected <= found, f"missing from the docs: {sorted(expected - found)}"
    assert all(c.argv[0] in PROGRAMS for c in commands)
    # Continuation lines joined: the multi-line commands end with their artifact, not mid-flags.
    assert all(not c.argv[-1].startswith("-") for c in commands), [c.where for c in commands]
    assert EMPTY_TRUSTED_ROOT in (ROOT / "README.md").read_text(), "the README's empty trusted root for cosign"


# --- the folders the commands run in --------------------------------------------------------------


@dataclass(frozen=True)
class Setting:
    folders: dict[str, Path]  # signing mode -> folder with its packs, bundles and keys
    sigstore: Sigstore
    api: GitHubApiProxy


def _copy_pack(source: Path, folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copyfile(source, folder / name)) for name in names]


def _tampered_copy(folder: Path) -> Path:
    """The folder again, every pack (and release file) changed by one byte; bundles, keys and roots as they were."""
    copy = folder.with_name(folder.name + "-tampered")
    shutil.copytree(folder, copy)
    for pack in [*copy.glob("*.tar"), *copy.glob("*.whl")]:
        data = pack.read_bytes()
        pack.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    return copy


@pytest.fixture(scope="module")
def setting(tmp_path_factory: pytest.TempPathFactory, demo_channel: object, sigstore: Sigstore) -> Iterator[Setting]:
    base = tmp_path_factory.mktemp("docs-commands")
    demo_channel.server.reset()  # type: ignore[attr-defined]  # no credentials or faults left by earlier tests
    project = make_project(base / "project", demo_channel)  # type: ignore[arg-type]
    packs = base / "packs"
    packed = run_cli(
        "pack", project.dir, "-p", "linux-64", "-p", "osx-arm64", "--output-dir", packs, "--checksums", "--json",
        check=True,
    )  # fmt: skip
    report = json.loads(packed.stdout)
    linux, trust = packs / "default-linux-64.tar", ["--sigstore-trust-config", str(sigstore.trust_config)]
    folders = {mode: base / mode for mode in ("github", "gitlab", "key", "generator")}
    # GitLab's instance comes from the variable the template documents, as pack's would.
    gitlab = {**gitlab_env("acme/app"), "PIXI_PACK_CI_SIGSTORE_TRUST_CONFIG": str(sigstore.trust_config)}
    for mode, env, flags in (
        ("github", github_env(sigstore, "acme/app", "refs/tags/v1.2.0"), trust),
        ("gitlab", gitlab, []),
    ):
        signed = _copy_pack(linux, folders[mode], "environment.tar", "default-linux-64.tar")
        run_cli("attest", *signed, *flags, env=env, check=True)  # GitHub: also uploaded to the mock API
        shutil.copyfile(sigstore.trusted_root, folders[mode] / "trusted_root.json")
    # The action's own release files (README's release section): signed by release.yml of its repository.
    release = _copy_pack(linux, folders["github"], "pixi_pack_ci-0.1.0-py3-none-any.whl")
    release_env = github_env(sigstore, "pixi-pack-ci/pixi-pack-action", "refs/tags/v0.1.0")
    run_cli("attest", *release, *trust, env=release_env, check=True)
    key_env = {**no_ci(), "PIXI_PACK_CI_KEY_PASSWORD": KEY_PASSWORD}
    run_cli("keygen", "--output-prefix", folders["key"] / "site", env=key_env, check=True)
    signed = _copy_pack(linux, folders["key"], "environment.tar")
    run_cli("attest", *signed, "--sign-key", folders["key"] / "site.key", env=key_env, check=True)
    (folders["key"] / "trusted_root.json").write_text(EMPTY_TRUSTED_ROOT + "\n")
    for pack in packs.glob("*.tar"):
        _copy_pack(pack, folders["generator"], pack.name)
    where = {
        "repository": "acme/app",
        "ref": "refs/tags/v1.2.0",
        "commit": COMMIT,
        "workflow": ".github/workflows/release.yml",
    }
    statement = generator_statement(parse_subjects(report["checksums"]["hashes"]), **where)
    sign_as_generator(sigstore, statement, folders["generator"] / "multiple.intoto.jsonl", **where)
    for mode in list(folders):
        folders[f"{mode}-tampered"] = _tampered_copy(folders[mode])
    api = GitHubApiProxy(base, sigstore.fake.rekor_url).start()
    yield Setting(folders, sigstore, api)
    api.stop()


def prepared(command: DocCommand, setting: Setting) -> tuple[list[str], dict[str, str]]:
    """The command as written plus the loopback trusted root, and the environment it runs in."""
    argv, env, sigstore = list(command.argv), {}, setting.sigstore
    if argv[0] == "slsa-verifier":  # cannot run offline: the same arguments to our implementation of its checks
        assert argv[1] == "verify-artifact", command
        argv = ["pixi-pack-ci", "verify", *argv[2:]]
    program = argv[0]
    if command.mode == "key":
        pass  # no Sigstore involved: a key command must work offline exactly as written
    elif program == "pixi-pack-ci" and not {"--trusted-root", "--offline", "--key"} & set(argv):
        argv += ["--trusted-root", str(sigstore.trusted_root)]
    elif program == "gh":
        argv += ["--custom-trusted-root", str(sigstore.trusted_root_jsonl)]
        if "--bundle" not in argv:  # fetched from GitHub's API: the mock
            env = setting.api.env()
    elif program == "sigstore":
        argv[1:1] = ["--trust-config", str(sigstore.trust_config)]
    elif program == "cosign" and "--trusted-root" not in argv:
        argv += ["--trusted-root", str(sigstore.trusted_root)]
    elif program == "sigstore-go-verification" and "-trustedrootJSONpath" not in argv:
        argv[1:1] = ["-trustedrootJSONpath", str(sigstore.trusted_root)]
    found = debian_tool(program) if program in ("cosign", "sigstore-go-verification") else venv_tool(program)
    return [found, *argv[1:]], env


def test_every_verification_command_in_the_docs_passes_and_rejects_a_tampered_pack(setting: Setting) -> None:
    commands = doc_commands()
    jobs = []
    for command in commands:
        argv, env = prepared(command, setting)
        for suffix in ("", "-tampered"):
            jobs.append((command, suffix, argv, setting.folders[command.mode + suffix], env))

    def one(job: tuple[DocCommand, str, list[str], Path, dict[str, str]]) -> Outcome:
        return run(job[2], cwd=job[3], env=job[4])

    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(pool.map(one, jobs))
    wrong = [
        f"{command.where} ({command.mode}{suffix}) {'accepted' if outcome.accepted else 'rejected'}: "
        f"{shlex.join(command.argv)}\n    {outcome.describe()}"
        for (command, suffix, *_), outcome in zip(jobs, outcomes, strict=True)
        if outcome.accepted != (suffix == "")
    ]
    assert not wrong, "\n".join(wrong)
    assert any(r.startswith("GET api.github.com/repos/acme/app/attestations/sha256:") for r in setting.api.requests)
