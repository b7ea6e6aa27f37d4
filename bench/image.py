"""``pixi-pack-ci image`` against the physical limit, measured side by side in one run.

    python bench/image.py               # 40 packages, about 200 MiB installed
    python bench/image.py --quick       # 12 packages, about 40 MiB

Not part of the test suite: timings are facts of the machine, printed as ratios against
references measured in the same run, medians of ``--repeat`` rounds:

* image from a warm package cache, gzip:6   vs  ``tar c`` of the installed environment | ``gzip -6``
* the same with ``--compression none``      vs  ``tar c`` of the installed environment
* the same image again, pushed to a registry that has it (Debian's docker-registry on 127.0.0.1)
* the same rebuilt with every package layer in the layer cache (``--use-cache``)
* peak RSS of the image build for two environment sizes

The image build includes installing the environment (rattler, from the warm cache); the
references start from an environment already installed, so the ratios are an upper bound on
what layering and compression cost. Writes docs/image-benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
for folder in (REPO / "tests" / "helpers", REPO / "tests"):
    sys.path.insert(0, str(folder))

from image_support import docker_registry  # noqa: E402
from run import peak_rss  # noqa: E402  # bench/run.py: the same VmHWM reading as the pack benchmarks
from support import PackageSpec, build_channel, channel_records, write_lockfile  # noqa: E402

MiB = 1024 * 1024
CLI = [sys.executable, "-m", "pixi_pack_ci.core"]
WORDS = [b"import", b"def", b"return", b"self", b"numpy", b"array", b"0x7f", b"\x00\x01", b"lib", b"float64"]


def payload(size: int, rng: random.Random) -> bytes:
    """Short random words: bytes that compress, as a package's files do."""
    out = bytearray()
    while len(out) < size:
        out += rng.choice(WORDS) + b" " + rng.randbytes(rng.randint(1, 6)) + b"\n"
    return bytes(out[:size])


def make_project(base: Path, count: int, total: int, seed: int) -> Path:
    rng = random.Random(seed)
    sizes = sorted((rng.lognormvariate(0, 1.2) for _ in range(count)), reverse=True)
    scale = total / sum(sizes)
    specs = [
        PackageSpec(f"pkg{i:03d}", files={f"lib/pkg{i:03d}/data.bin": payload(int(s * scale), rng)})
        for i, s in enumerate(sizes)
    ]
    build_channel(base / "channel", specs, base / "work")
    records = channel_records(base / "channel", (base / "channel").as_uri())
    project = base / "project"
    project.mkdir()
    (project / "pixi.toml").write_text('[workspace]\nname = "bench"\nchannels = []\nplatforms = []\n')
    write_lockfile(project / "pixi.lock", {"default": {"linux-64": records["linux-64"]}}, (base / "channel").as_uri())
    return project


def timed(cmd: list[str] | str, **kwargs: object) -> tuple[float, int]:
    """Wall seconds and peak RSS (bytes) of one command. The peak is VmHWM, read while it runs:
    the rusage of a child counts the memory of this (big) process it was forked from."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)  # type: ignore[call-overload]
    peak = 0
    while proc.poll() is None:
        peak = max(peak, peak_rss(proc.pid))
        time.sleep(0.02)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {cmd}: {proc.stderr.read().decode() if proc.stderr else ''}")
    return elapsed, peak


def image(project: Path, cache: Path, out: Path, *extra: str) -> list[str]:
    return [*CLI, "image", str(project), "-p", "linux-64", "--base", "scratch", "--use-cache", str(cache),
            "--output", f"oci-layout:{out}", "-q", *extra]  # fmt: skip


def measure(project: Path, scratch: Path, repeat: int) -> dict[str, list[float]]:
    cache = scratch / "cache"
    subprocess.run(image(project, cache, scratch / "warmup"), check=True)  # fills the package cache
    subprocess.run([*CLI, "pack", str(project), "-p", "linux-64", "-o", str(scratch / "env.tar"), "-q"], check=True)
    subprocess.run([*CLI, "unpack", str(scratch / "env.tar"), "-o", str(scratch / "deploy"), "-q"], check=True)
    env = scratch / "deploy" / "env"
    results: dict[str, list[float]] = {
        k: [] for k in ("image_gzip", "tar_gzip", "image_none", "tar", "image_cached", "rss")
    }
    for _ in range(repeat):
        shutil.rmtree(cache / "image-layers", ignore_errors=True)  # layers written, not taken from the cache
        seconds, rss = timed(image(project, cache, scratch / "img"))
        results["image_gzip"].append(seconds)
        results["rss"].append(rss)
        results["tar_gzip"].append(timed(f"tar -C {env} -cf - . | gzip -6 -n > /dev/null", shell=True)[0])
        results["image_none"].append(timed(image(project, cache, scratch / "plain", "--compression", "none"))[0])
        results["image_cached"].append(timed(image(project, cache, scratch / "img"))[0])  # the same, layers cached
        # Through a pipe: GNU tar reads nothing when it writes to /dev/null itself.
        results["tar"].append(timed(f"tar -C {env} -cf - . | cat > /dev/null", shell=True)[0])
    return results


def measure_push(project: Path, scratch: Path, repeat: int) -> dict[str, list[float]]:
    with docker_registry(scratch / "registry") as registry:
        ref = f"{registry.host}/bench/app:1"
        cmd = image(project, scratch / "cache", scratch / "pushed", "--push", ref)
        subprocess.run(cmd, check=True)
        again = [timed(cmd)[0] for _ in range(repeat)]
        local = [timed(image(project, scratch / "cache", scratch / "pushed"))[0] for _ in range(repeat)]
    return {"push_again": again, "same_without_push": local}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [(12, 20 * MiB), (12, 40 * MiB)] if args.quick else [(40, 100 * MiB), (40, 200 * MiB)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-image.") as tmp:
        for i, (count, total) in enumerate(sizes):
            base = Path(tmp) / f"env{i}"
            base.mkdir()
            project = make_project(base, count, total, seed=i)
            result = measure(project, base, args.repeat)
            if i == len(sizes) - 1:
                result.update(measure_push(project, base, args.repeat))
            rows.append((count, total, {k: statistics.median(v) for k, v in result.items()}))
            shutil.rmtree(base / "work", ignore_errors=True)
    write_report(rows, args.repeat)
    return 0


def write_report(rows: list[tuple[int, int, dict[str, float]]], repeat: int) -> None:
    lines = [
        "# Image benchmarks", "",
        f"`python bench/image.py` on {os.cpu_count()} CPUs, Python {sys.version.split()[0]}, medians of {repeat};",
        "synthetic packages of short random words. The image build includes installing the environment",
        "from the warm cache; the references start from it installed. The image compresses up to four",
        "layers at once, `gzip` on one core.", "",
        "| packages | payload | image gzip:6 | tar \\| gzip -6 | ratio | image none | tar | ratio | peak RSS |",
        "|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for count, total, m in rows:
        lines.append(
            f"| {count} | {total // MiB} MiB | {m['image_gzip']:.2f} s | {m['tar_gzip']:.2f} s | "
            f"{m['image_gzip'] / m['tar_gzip']:.2f}x | {m['image_none']:.2f} s | {m['tar']:.2f} s | "
            f"{m['image_none'] / m['tar']:.2f}x | {m['rss'] / MiB:.0f} MiB |"
        )
    lines += [
        "",
        "Rebuilt with every package layer in the layer cache: "
        + ", ".join(f"{m['image_cached']:.2f} s ({total // MiB} MiB)" for _, total, m in rows)
        + ".",
    ]
    last = rows[-1][2]
    lines += [
        "",
        f"Unchanged rebuild pushed again (every blob already there: one HEAD each, then the manifests): "
        f"{last['push_again']:.2f} s, against {last['same_without_push']:.2f} s for the same build without "
        "the push. Both take the package layers from the layer cache (--use-cache); the environment is "
        "installed again.",
    ]  # fmt: skip
    text = "\n".join(lines) + "\n"
    (REPO / "docs" / "image-benchmarks.md").write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
