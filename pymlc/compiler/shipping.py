"""What of the spec's folder ships in its image (design invariant 7: nothing reaches an image
that the user did not mean to ship).

The folder is walked without following symbolic links. Left out:

* local clutter (``CLUTTER_PATTERNS``): VCS data, environments, caches, pymlc's own outputs;
* files that look like credentials by name (``SECRET_PATTERNS``) or, for small files, by
  content (``SECRET_MARKERS``: private keys whatever their name, cloud and cluster credentials);
* what is not a regular file, folder or link (sockets, FIFOs, devices);
* a link whose target is left out.

Both pattern tables are written into the generated ``.dockerignore`` (``IGNORE_PATTERNS``), so
that a plain ``docker build`` of the context leaves the same names out; content checks only
pymlc makes. A symbolic link that resolves outside the folder is an error (``E301``) in
``validate``, ``build`` and ``image``: its target would otherwise be baked into the image. A
link that stays inside ships as a link, rewritten relative to its own folder, so that it
resolves the same way under ``/opt/pyml/model``; its target ships (or not) on its own terms, so
a link never carries a left-out file's content into the image.

There is no switch to ship a left-out file on purpose: a secret in an image is readable by
everyone who can pull it, from every registry it is copied to. A file that only looks like a
secret ships under another name (a public certificate as ``.crt``); settings go in
``serving.env``; real credentials are given to the container at run time.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CLUTTER_PATTERNS",
    "CONTEXT_PREFIX",
    "IGNORE_PATTERNS",
    "SECRET_MARKERS",
    "SECRET_PATTERNS",
    "LeftOut",
    "ModelFiles",
    "OutsideLink",
    "scan_model_folder",
]

# The spec's folder is model/ in the build context (see emit/dockerfile.py's CONTEXT_DIRS);
# .dockerignore patterns are relative to the context's root.
CONTEXT_PREFIX = "model"

CLUTTER_PATTERNS: tuple[str, ...] = (
    "**/.git",
    "**/.hg",
    "**/.svn",
    "**/.venv",
    "**/__pycache__",
    "**/*.pyc",
    "**/.pytest_cache",
    "**/.mypy_cache",
    "**/.ipynb_checkpoints",
    "**/.DS_Store",
    "model/generated",
    "model/spark-warehouse",
    "model/.pyml-warehouse",
    "model/metastore_db",
)

# Names that usually hold credentials -> what they hold (said when one is left out). A folder
# pattern leaves out the whole folder. Matching ignores case.
SECRET_PATTERNS: dict[str, str] = {
    "**/.env": "environment file",
    "**/.env.*": "environment file",
    "**/.envrc": "environment file",
    "**/.netrc": "login credentials",
    "**/.git-credentials": "git credentials",
    "**/.npmrc": "npm credentials",
    "**/.pypirc": "PyPI credentials",
    "**/.pgpass": "PostgreSQL passwords",
    "**/.my.cnf": "MySQL credentials",
    "**/.htpasswd": "password file",
    "**/.aws": "AWS credentials",
    "**/.azure": "Azure credentials",
    "**/.config/gcloud": "Google Cloud credentials",
    "**/credentials.json": "credentials",
    "**/client_secret*.json": "OAuth client secret",
    "**/.docker/config.json": "container registry credentials",
    "**/.kube": "Kubernetes credentials",
    "**/kubeconfig": "Kubernetes credentials",
    "**/*.kubeconfig": "Kubernetes credentials",
    "**/.ssh": "SSH keys",
    "**/.gnupg": "GnuPG keys",
    "**/id_rsa": "SSH private key",
    "**/id_dsa": "SSH private key",
    "**/id_ecdsa": "SSH private key",
    "**/id_ecdsa_sk": "SSH private key",
    "**/id_ed25519": "SSH private key",
    "**/id_ed25519_sk": "SSH private key",
    "**/*.pem": "PEM key or certificate",
    "**/*.key": "private key",
    "**/*.p12": "PKCS#12 key store",
    "**/*.pfx": "PKCS#12 key store",
    "**/*.jks": "Java key store",
    "**/*.keystore": "key store",
    "**/*.ppk": "PuTTY private key",
}

IGNORE_PATTERNS: tuple[str, ...] = (*CLUTTER_PATTERNS, *SECRET_PATTERNS)

# Contents that give a credential away whatever the file's name (read from the first
# _SNIFF_BYTES of files up to _SNIFF_MAX_SIZE: keys and credential files are small).
SECRET_MARKERS: tuple[tuple[re.Pattern[bytes], str], ...] = (
    (re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----"), "private key"),
    (re.compile(rb'(?s)\A(?=.*"type"\s*:\s*"service_account")(?=.*"private_key")'),
     "Google service-account key"),
    (re.compile(rb"(?im)^\s*aws_secret_access_key\s*="), "AWS credentials"),
    (re.compile(rb"(?s)\A(?=.*^kind:\s*Config\s*$)(?=.*^users:)", re.MULTILINE),
     "Kubernetes credentials"),
)
_SNIFF_BYTES = 16384
_SNIFF_MAX_SIZE = 65536


@dataclass(frozen=True)
class LeftOut:
    """A path of the folder that does not ship; ``path`` ends in ``/`` for a folder."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


@dataclass(frozen=True)
class OutsideLink:
    """A symbolic link of the folder whose target is outside it."""

    path: str
    target: str

    def message(self) -> str:
        """The diagnostic's text: the link, where it leads, and the fix."""
        return (f"{self.path} is a symbolic link to {self.target}, outside the spec's folder;"
                " an image gets only what is inside the folder: copy the file (or folder) in"
                " instead of linking to it, or delete the link")


@dataclass
class ModelFiles:
    """The folder as it ships (paths relative to it, POSIX separators, sorted).

    Attributes:
        files: regular files to copy.
        dirs: folders to create (empty ones too).
        links: link -> the relative target it gets in the image.
        left_out: what does not ship, with why (clutter is not listed).
        outside: links that resolve outside the folder; the folder must not ship while any.
    """

    root: Path
    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)
    left_out: list[LeftOut] = field(default_factory=list)
    outside: list[OutsideLink] = field(default_factory=list)


def scan_model_folder(root: Path, *, skip: Path | None = None,
                      contents: bool = True) -> ModelFiles:
    """Walk ``root`` (never following links) and sort every entry into what ships and not.

    Args:
        root: the spec's folder.
        skip: a folder inside ``root`` left out as well (the build's output folder).
        contents: also read small files for ``SECRET_MARKERS`` (validation needs only links).
    """
    real = Path(os.path.realpath(root))
    found = ModelFiles(real)
    skipped = Path(os.path.realpath(skip)) if skip is not None else None
    pending: dict[str, str] = {}  # inside link -> its target, relative to the root
    for rel, entry in _walk(real, skipped, found):
        if entry.is_symlink():
            _link(real, rel, entry.path, found, pending)
        elif entry.is_file(follow_symlinks=False):
            marker = _sniff(entry) if contents else None
            if marker:
                found.left_out.append(LeftOut(rel, marker))
            else:
                found.files.append(rel)
        else:
            found.left_out.append(LeftOut(rel, "not a regular file"))
    _settle_links(found, pending, skipped)
    found.files.sort()
    found.dirs.sort()
    found.left_out.sort(key=lambda item: item.path)
    return found


def _walk(real: Path, skipped: Path | None,
          found: ModelFiles) -> Iterator[tuple[str, os.DirEntry[str]]]:
    """Every entry that is not left out by its name; folders are entered, not yielded."""
    folders = [""]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(real / folder if folder else real) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as exc:  # the build could not read it either
            found.left_out.append(LeftOut(folder + "/", f"cannot be read: {exc.strerror}"))
            continue
        for entry in entries:
            rel = posixpath.join(folder, entry.name) if folder else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            reason = _by_name(rel)
            if reason is not None:
                if reason:  # clutter goes silently
                    found.left_out.append(LeftOut(rel + "/" if is_dir else rel, reason))
            elif is_dir:
                if skipped is None or Path(entry.path) != skipped:
                    found.dirs.append(rel)
                    folders.append(rel)
            else:
                yield rel, entry


def _by_name(rel: str) -> str | None:
    """Why ``rel`` is left out by its name: a secret's reason, "" for clutter, None if not."""
    path = f"{CONTEXT_PREFIX}/{rel}"
    if not _ANY_IGNORED.match(path):  # one match for the common case
        return None
    for pattern, reason in SECRET_PATTERNS.items():
        if _SECRETS[pattern].match(path):
            return reason
    return ""


def _regex(pattern: str) -> str:
    """A .dockerignore pattern as a regular expression: ``**/`` is any number of folders,
    ``*`` any characters but ``/``, ``?`` one of them."""
    parts = re.split(r"(\*\*/|\*|\?)", pattern)
    return "".join({"**/": "(?:[^/]*/)*", "*": "[^/]*", "?": "[^/]"}.get(p, re.escape(p))
                   for p in parts) + r"\Z"


# Case is ignored, as the Docker SDK does when it reads .dockerignore.
_ANY_IGNORED = re.compile("|".join(f"(?:{_regex(p)})" for p in IGNORE_PATTERNS), re.IGNORECASE)
_SECRETS = {pattern: re.compile(_regex(pattern), re.IGNORECASE) for pattern in SECRET_PATTERNS}


def _sniff(entry: os.DirEntry[str]) -> str | None:
    try:
        if entry.stat(follow_symlinks=False).st_size > _SNIFF_MAX_SIZE:
            return None
        with open(entry.path, "rb") as handle:
            head = handle.read(_SNIFF_BYTES)
    except OSError as exc:  # the build could not read it either
        return f"cannot be read: {exc.strerror}"
    for marker, what in SECRET_MARKERS:
        if marker.search(head):
            return what
    return None


def _link(real: Path, rel: str, path: str, found: ModelFiles,
          pending: dict[str, str]) -> None:
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(real):
        written = os.readlink(path)
        shown = written if written == str(target) else f"{written} ({target})"
        found.outside.append(OutsideLink(rel, shown))
        return
    pending[rel] = target.relative_to(real).as_posix()


def _settle_links(found: ModelFiles, pending: dict[str, str], skipped: Path | None) -> None:
    # After the walk: only then is it known whether a link's target ships.
    dropped = {item.path.rstrip("/") for item in found.left_out}
    for rel, target in sorted(pending.items()):
        parts = target.split("/")
        ancestors = {"/".join(parts[:i]) for i in range(1, len(parts) + 1)} - {"."}
        hidden = bool(ancestors & dropped) or any(_by_name(a) is not None for a in ancestors)
        if hidden or (skipped is not None and (found.root / target).is_relative_to(skipped)):
            found.left_out.append(LeftOut(rel, f"links to {target}, which is left out"))
        else:
            found.links[rel] = posixpath.relpath(target, posixpath.dirname(rel) or ".")
