"""Build the lwIP target program from Debian's ``lwip`` source package, cached outside the repo.

No lwIP code is kept in this repository: the build fetches the source package with
``apt-get source`` through a private sources list and lists directory (nothing under
``/etc/apt`` or ``/var/lib/apt`` changes), compiles lwIP's core, IPv4, IPv6 and Ethernet files
together with our own ``main.c`` (the firmware-style main loop, the TAP driver and the
services), and caches the result by a hash of everything that goes into it: the options, our
sources (this file included), the lwIP package version, the compiler and its flags.

Options are ``lwipopts.h`` settings. Anything not given keeps lwIP's own ``opt.h`` default, so
``build({})`` is lwIP out of the box (TCP_MSS 536, TCP_WND 4 * MSS, TCP_SND_BUF 2 * MSS, ...).
On top of the defaults the build always sets what this program needs (NO_SYS=1, raw API,
IPv4 + IPv6 on Ethernet; :data:`REQUIRED`, not overridable) and what a 64-bit host needs
(:data:`HOST_DEFAULTS`, overridable). Combinations lwIP rejects fail at compile time with
lwIP's own ``#error`` text (``init.c`` sanity checks), e.g. MEMP_NUM_TCP_SEG < TCP_SND_QUEUELEN.

    python -m targets.lwip.build [--force] [--cache DIR] [KEY=VALUE ...]   # prints the binary

Cache: ``$TCP_HIL_CACHE/lwip`` or ``${XDG_CACHE_HOME:-~/.cache}/tcp-hil/lwip``; the source in
``src/``, each build in ``<hash>/`` (``lwip-target``, the generated ``lwipopts.h``,
``build.json``, ``build.log``).
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
BINARY = "lwip-target"

# Pinned so every machine builds the same lwIP: bookworm's 2.1.3 is the version the reference
# sheets and the lwip-default TCP profile were written against.
PACKAGE = "lwip"
PACKAGE_VERSION = "2.1.3+dfsg1-2"
SOURCE_DIR = "lwip-2.1.3+dfsg1"
DEBIAN_SUITE = os.environ.get("TCP_HIL_DEBIAN_SUITE", "bookworm")
DEBIAN_MIRROR = os.environ.get("TCP_HIL_DEBIAN_MIRROR", "http://deb.debian.org/debian")
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")

CC = os.environ.get("CC", "gcc")
CFLAGS: tuple[str, ...] = ("-O2", "-g", "-Wall", "-std=gnu11")

# What main.c is written against: one thread without an OS, the raw TCP API with callbacks,
# IPv4 and IPv6 over Ethernet. IPV6_FRAG_COPYHEADER: on 64-bit hosts lwIP's reassembly helper
# does not fit in the IPv6 fragment header it would overlay, and ip6_frag.c asserts at run time.
REQUIRED: dict[str, int] = {
    "NO_SYS": 1,
    "SYS_LIGHTWEIGHT_PROT": 0,
    "LWIP_SOCKET": 0,
    "LWIP_NETCONN": 0,
    "LWIP_CALLBACK_API": 1,
    "LWIP_ETHERNET": 1,
    "LWIP_IPV4": 1,
    "LWIP_IPV6": 1,
    "LWIP_TCP": 1,
    "IPV6_FRAG_COPYHEADER": 1,
}
# lwIP's default alignment is 1 (8-bit MCUs); heap and pool blocks for 64-bit structs want 8.
HOST_DEFAULTS: dict[str, int | str] = {"MEM_ALIGNMENT": 8}

OUR_INPUTS = ("main.c", "arch/cc.h", "lwipopts.h.in", "build.py")
LWIP_SOURCE_GLOBS = ("src/core/*.c", "src/core/ipv4/*.c", "src/core/ipv6/*.c")
LWIP_SOURCE_FILES = ("src/netif/ethernet.c",)

_NAME = re.compile(r"[A-Z][A-Z0-9_]*")
# A value is a number or a small C expression of other options, e.g. (4 * TCP_MSS).
_VALUE = re.compile(r"[A-Za-z0-9_ ()*+\-/<>|&~]+")

OptionValue = int | str


class BuildError(RuntimeError):
    """The source could not be fetched or the program did not compile; the text says why."""


@dataclass(frozen=True)
class Build:
    binary: Path
    directory: Path
    options: dict[str, OptionValue]  # everything written to lwipopts.h
    lwip_version: str
    cached: bool  # True when an earlier build was reused


def cache_root() -> Path:
    env = os.environ.get("TCP_HIL_CACHE")
    if env:
        return Path(env) / "lwip"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "tcp-hil" / "lwip"


def build(
    options: Mapping[str, OptionValue] | None = None,
    cache: Path | None = None,
    force: bool = False,
) -> Path:
    """The path of an lwIP target binary built with ``options`` (building it if needed)."""
    return ensure_built(options, cache, force).binary


def ensure_built(
    options: Mapping[str, OptionValue] | None = None,
    cache: Path | None = None,
    force: bool = False,
) -> Build:
    """Like :func:`build`, with what was built and whether the cache answered."""
    requested = dict(options or {})
    check_syntax(requested)
    root = cache if cache is not None else cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock"):
        tree = fetch_source(root / "src")
        merged = merge_options(requested, tree)
        key = build_key(merged)
        out = root / key
        binary = out / BINARY
        if binary.is_file() and not force:
            return Build(binary, out, merged, PACKAGE_VERSION, cached=True)
        _compile(tree, merged, key, root, out)
        return Build(binary, out, merged, PACKAGE_VERSION, cached=False)


def check_syntax(options: Mapping[str, OptionValue]) -> None:
    """Reject names and values that cannot be lwipopts.h settings, before fetching anything."""
    for name, value in options.items():
        if not _NAME.fullmatch(name):
            raise ValueError(f"lwIP option {name!r}: names are upper case, e.g. TCP_MSS")
        if name in REQUIRED and value != REQUIRED[name]:
            raise ValueError(
                f"lwIP option {name}={value}: the target program needs {name}={REQUIRED[name]}"
            )
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError(f"lwIP option {name}: value must be an int or a C expression")
        if isinstance(value, str) and not _VALUE.fullmatch(value):
            raise ValueError(f"lwIP option {name}={value!r}: not a number or C expression")


def merge_options(options: Mapping[str, OptionValue], tree: Path) -> dict[str, OptionValue]:
    """Required, then host defaults, then the request; unknown option names are errors."""
    known = known_options(tree)
    unknown = sorted(n for n in options if n not in known)
    if unknown:
        raise ValueError(
            f"unknown lwIP option(s) {', '.join(unknown)}: not an option of lwIP "
            f"{PACKAGE_VERSION} (see src/include/lwip/opt.h)"
        )
    merged: dict[str, OptionValue] = dict(REQUIRED)
    merged.update({k: v for k, v in HOST_DEFAULTS.items() if k not in options})
    merged.update(options)
    return merged


def known_options(tree: Path) -> set[str]:
    """Every name lwIP's headers let lwipopts.h define: the ones guarded by ``#ifndef X`` or
    ``#if !defined X``, and everything opt.h defines (some come in groups under one guard,
    e.g. TCP_RCV_SCALE with LWIP_WND_SCALE)."""
    guarded = re.compile(r"^\s*#\s*(?:ifndef\s+|if\s+!\s*defined\s*\(?\s*)([A-Z][A-Z0-9_]*)", re.M)
    defined = re.compile(r"^\s*#\s*define\s+([A-Z][A-Z0-9_]*)", re.M)
    names: set[str] = set()
    for header in (tree / "src" / "include").rglob("*.h"):
        names.update(guarded.findall(header.read_text(errors="replace")))
    names.update(defined.findall((tree / "src" / "include" / "lwip" / "opt.h").read_text()))
    return names


def build_key(merged: Mapping[str, OptionValue]) -> str:
    h = hashlib.sha256()
    record = {
        "options": sorted((k, str(v)) for k, v in merged.items()),
        "lwip": PACKAGE_VERSION,
        "cc": _compiler_id(),
        "cflags": list(CFLAGS),
    }
    h.update(json.dumps(record, sort_keys=True).encode())
    for name in OUR_INPUTS:
        h.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    return h.hexdigest()[:16]


def render_lwipopts(merged: Mapping[str, OptionValue], key: str) -> str:
    groups = (
        ("needed by the target program (NO_SYS=1, raw API, IPv4 + IPv6 on Ethernet)", REQUIRED),
        ("host defaults (64-bit Linux)", {k: v for k, v in merged.items() if k in HOST_DEFAULTS}),
        (
            "requested for this build",
            {k: v for k, v in merged.items() if k not in REQUIRED and k not in HOST_DEFAULTS},
        ),
    )
    parts = []
    for title, opts in groups:
        if opts:
            parts.append(f"/* {title} */")
            parts.extend(f"#define {name:<28} {value}" for name, value in opts.items())
            parts.append("")
    template = (HERE / "lwipopts.h.in").read_text()
    return template.replace("@HASH@", key).replace("@OPTIONS@", "\n".join(parts).rstrip())


# ---- fetching Debian's source package ----


def fetch_source(where: Path) -> Path:
    """The unpacked source tree of lwip ``PACKAGE_VERSION`` under ``where``, fetched once."""
    tree = where / f"{PACKAGE}_{PACKAGE_VERSION}"
    if (tree / "src" / "include" / "lwip" / "opt.h").is_file():
        return tree
    ensure_dpkg_dev()
    apt = where / "apt"
    (apt / "lists" / "partial").mkdir(parents=True, exist_ok=True)
    sources = apt / "sources.list"
    signed = f"[signed-by={DEBIAN_KEYRING}] " if DEBIAN_KEYRING.is_file() else ""
    sources.write_text(f"deb-src {signed}{DEBIAN_MIRROR} {DEBIAN_SUITE} main\n")
    # Empty pkgcache/srcpkgcache turn apt's binary caches off, so /var/cache/apt is not touched.
    aptopts = [
        f"-oDir::Etc::SourceList={sources}",
        "-oDir::Etc::SourceParts=/dev/null",
        f"-oDir::State::Lists={apt / 'lists'}",
        "-oDir::Cache::pkgcache=",
        "-oDir::Cache::srcpkgcache=",
    ]
    if os.geteuid() == 0:  # _apt cannot read our cache under /root; download as root, quietly
        aptopts.append("-oAPT::Sandbox::User=root")
    _run(["apt-get", "-q", *aptopts, "update"], what="apt-get update (private lists)")
    work = Path(tempfile.mkdtemp(dir=where, prefix=".fetch-"))
    try:
        _run(
            ["apt-get", "-q", *aptopts, "source", f"{PACKAGE}={PACKAGE_VERSION}"],
            what=f"apt-get source {PACKAGE}={PACKAGE_VERSION}",
            cwd=work,
        )
        unpacked = work / SOURCE_DIR
        if not (unpacked / "src" / "include" / "lwip" / "opt.h").is_file():
            raise BuildError(f"apt-get source did not unpack {SOURCE_DIR} in {work}")
        if tree.exists():
            shutil.rmtree(tree)
        os.replace(unpacked, tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tree


def ensure_dpkg_dev() -> None:
    """apt-get source unpacks with dpkg-source, which comes with dpkg-dev."""
    if shutil.which("dpkg-source"):
        return
    if os.geteuid() != 0:
        raise BuildError("fetching the lwIP source needs dpkg-dev: apt-get install dpkg-dev")
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "dpkg-dev"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    res = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600)
    if res.returncode != 0:  # a fresh machine may have no package lists yet
        _run(["apt-get", "update", "-q"], what="apt-get update", env=env)
        _run(install, what="apt-get install dpkg-dev", env=env)


# ---- compiling ----


def lwip_sources(tree: Path) -> list[Path]:
    files = [p for g in LWIP_SOURCE_GLOBS for p in sorted(tree.glob(g))]
    return files + [tree / f for f in LWIP_SOURCE_FILES]


def _compile(
    tree: Path, merged: Mapping[str, OptionValue], key: str, root: Path, out: Path
) -> None:
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".build-{key}-"))
    try:
        glue = tmp / "include"
        (glue / "arch").mkdir(parents=True)
        (glue / "lwipopts.h").write_text(render_lwipopts(merged, key))
        shutil.copyfile(HERE / "arch" / "cc.h", glue / "arch" / "cc.h")
        objdir = tmp / "obj"
        objdir.mkdir()
        units = [*lwip_sources(tree), HERE / "main.c"]
        incs = [f"-I{glue}", f"-I{tree / 'src' / 'include'}"]

        def compile_one(src: Path) -> tuple[Path, str]:
            rel = src.relative_to(tree) if src.is_relative_to(tree) else Path(src.name)
            obj = objdir / (str(rel).replace("/", "_")[:-2] + ".o")
            res = subprocess.run(
                [CC, *CFLAGS, *incs, "-c", str(src), "-o", str(obj)],
                capture_output=True,
                text=True,
                timeout=300,
            )
            if res.returncode != 0:
                raise BuildError(f"compiling {rel} failed:\n{res.stderr.strip()}")
            return obj, res.stderr

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            results = list(pool.map(compile_one, units))
        log = "".join(err for _, err in results)
        res = subprocess.run(
            [CC, *CFLAGS, "-o", str(tmp / BINARY), *(str(o) for o, _ in results)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if res.returncode != 0:
            raise BuildError(f"linking {BINARY} failed:\n{res.stderr.strip()}")
        log += res.stderr
        shutil.rmtree(objdir)
        os.replace(glue / "lwipopts.h", tmp / "lwipopts.h")
        shutil.rmtree(glue)
        (tmp / "build.log").write_text(log)
        info = {
            "key": key,
            "package": f"{PACKAGE} {PACKAGE_VERSION} (Debian {DEBIAN_SUITE})",
            "options": dict(merged),
            "cc": _compiler_id(),
            "cflags": list(CFLAGS),
        }
        (tmp / "build.json").write_text(json.dumps(info, indent=2) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _compiler_id() -> str:
    try:
        res = subprocess.run([CC, "-dumpfullversion", "-dumpmachine"], capture_output=True)
    except FileNotFoundError:
        raise BuildError(f"no C compiler {CC!r}: apt-get install gcc") from None
    return f"{CC} " + " ".join(res.stdout.decode().split())


def _run(
    argv: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> None:
    try:
        res = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, timeout=600)
    except FileNotFoundError:
        raise BuildError(f"{what}: {argv[0]} not found (Debian/Ubuntu with apt needed)") from None
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-15:])
        raise BuildError(f"{what} failed (exit {res.returncode}):\n{tail}")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One build at a time per cache: parallel test workers share it."""
    with open(path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ---- command line ----


def parse_assignments(items: Sequence[str]) -> dict[str, OptionValue]:
    """``["TCP_MSS=1460", "TCP_WND=(4*TCP_MSS)"]`` -> options; ValueError naming the bad item."""
    out: dict[str, OptionValue] = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name.strip() or not text.strip():
            raise ValueError(f"{item!r}: write KEY=VALUE, e.g. TCP_MSS=1460")
        try:
            out[name.strip()] = int(text.strip(), 0)
        except ValueError:
            out[name.strip()] = text.strip()
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m targets.lwip.build",
        description="Build the lwIP target from Debian's source package; print its path.",
    )
    ap.add_argument("options", nargs="*", metavar="KEY=VALUE", help="lwipopts.h overrides")
    ap.add_argument("--cache", type=Path, default=None, help=f"cache (default {cache_root()})")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args(argv)
    try:
        result = ensure_built(parse_assignments(args.options), args.cache, args.force)
    except ValueError as exc:
        print(f"lwip build: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"lwip build: {exc}", file=sys.stderr)
        return 1
    print(result.binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
