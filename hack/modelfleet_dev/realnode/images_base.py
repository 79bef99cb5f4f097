"""The local stand-in for `python:3.11-slim`: a Debian bookworm minbase made by debootstrap.

No registry with base images is reachable here, so Dockerfile.server and Dockerfile.operator
are built `FROM` this image (their `BASE` build argument). It carries the build machine's CA
bundle with `PIP_CERT` and `SSL_CERT_FILE` pointing at it: the package registries are reached
through a proxy whose CA only that bundle holds. The Debian mirror is the one the machine's apt
sources name, read at build time. Kept in buildah's storage as `localhost/modelfleet-base:<key>`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .images_run import (
    ImageBuildError,
    buildah,
    content_key,
    image_exists,
    images_dir,
    need_tool,
    run_step,
    say,
)

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "python3-pip", "python-is-python3", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Apart from Debian's own bundle: installing a package may regenerate that one.
IMAGE_CA_BUNDLE = "/etc/ssl/certs/build-host-ca-bundle.crt"
APT_SOURCES = Path("/etc/apt/sources.list")
APT_SOURCES_DIR = Path("/etc/apt/sources.list.d")


def base_key() -> str:
    """Changes with this recipe (this file) and with the machine's CA bundle."""
    if not HOST_CA_BUNDLE.is_file():
        raise ImageBuildError(f"no CA bundle at {HOST_CA_BUNDLE} (Debian's ca-certificates)")
    return content_key(SUITE, *PACKAGES, files=[Path(__file__), HOST_CA_BUNDLE])


def base_ref() -> str:
    return f"localhost/modelfleet-base:{base_key()}"


def debian_mirror(suite: str = SUITE) -> str:
    """The URI of the machine's apt source for `suite` (one-line or deb822 format)."""
    for path in [APT_SOURCES, *sorted(APT_SOURCES_DIR.glob("*.list"))]:
        for uri in _one_line_uris(path.read_text() if path.is_file() else "", suite):
            return uri
    for path in sorted(APT_SOURCES_DIR.glob("*.sources")):
        for uri in _deb822_uris(path.read_text(), suite):
            return uri
    raise ImageBuildError(f"no apt source for Debian {suite} in {APT_SOURCES}(.d)")


def _one_line_uris(text: str, suite: str) -> list[str]:
    uris = []
    for line in text.splitlines():
        words = [w for w in line.split() if not w.startswith("[")]
        if len(words) >= 3 and words[0] == "deb" and words[2] == suite:
            uris.append(words[1])
    return uris


def _deb822_uris(text: str, suite: str) -> list[str]:
    uris = []
    for stanza in text.split("\n\n"):
        fields: dict[str, list[str]] = {}
        for line in stanza.splitlines():
            name, sep, value = line.partition(":")
            if sep and not line.startswith(("#", " ")):
                fields[name.strip().lower()] = value.split()
        enabled = fields.get("enabled", ["yes"]) != ["no"]
        if enabled and "deb" in fields.get("types", []) and suite in fields.get("suites", []):
            uris.extend(fields.get("uris", []))
    return uris


def ensure_base(logs: Path) -> str:
    """The base image's ref, debootstrapped and committed first if missing (lock held)."""
    ref = base_ref()
    if image_exists(ref):
        say(f"cached: base image {ref}")
        return ref
    need_tool("debootstrap", "apt-get install debootstrap (hack/setup-real.sh does)")
    need_tool("buildah", "apt-get install buildah (hack/setup-real.sh does)")
    work = Path(tempfile.mkdtemp(prefix=".base-", dir=images_dir()))
    try:
        rootfs = work / "rootfs"
        say(f"making the base image: debootstrap {SUITE} minbase + {' '.join(PACKAGES)}")
        cmd = ["debootstrap", "--variant=minbase", f"--include={','.join(PACKAGES)}"]
        cmd += [SUITE, str(rootfs), debian_mirror()]
        run_step("debootstrap", cmd, logs / "debootstrap.log")
        _trim(rootfs)
        shutil.copyfile(HOST_CA_BUNDLE, rootfs / IMAGE_CA_BUNDLE.lstrip("/"))
        tarball = work / "rootfs.tar"
        run_step("pack the root file system", _tar(rootfs, tarball), logs / "base-tar.log")
        _commit(tarball, ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ref


def _trim(rootfs: Path) -> None:
    """Drop what a slim image does not ship: downloaded packages and apt lists."""
    for folder in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for path in (rootfs / folder).glob("*"):
            if path.is_file():
                path.unlink()


def _tar(rootfs: Path, tarball: Path) -> list[str]:
    return [
        "tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(tarball),
        "--exclude=./dev/*", "--exclude=./proc/*", "--exclude=./sys/*", ".",
    ]  # fmt: skip


def _commit(tarball: Path, ref: str) -> None:
    container = buildah("from", "scratch")
    try:
        buildah("add", container, str(tarball), "/")
        buildah(
            "config",
            "--env", f"PIP_CERT={IMAGE_CA_BUNDLE}",
            "--env", f"SSL_CERT_FILE={IMAGE_CA_BUNDLE}",
            "--env", f"REQUESTS_CA_BUNDLE={IMAGE_CA_BUNDLE}",
            "--env", "LANG=C.UTF-8",
            "--cmd", "python3",
            container,
        )  # fmt: skip
        buildah("commit", "--quiet", container, ref)
    finally:
        buildah("rm", container)
