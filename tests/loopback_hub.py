"""A loopback Hugging Face Hub for tests: the endpoints the real ``huggingface_hub`` client calls to create a
repo, commit files (preupload answers ``regular`` for every file, so contents travel base64-inline in the NDJSON
commit: no LFS, no Xet), branch, tag, and download them again (revision info, tree listing, ``resolve``).

Repositories live in memory as git-like commits (``{path: bytes}`` snapshots, each with a 40-hex sha). Every request
is recorded in :attr:`LoopbackHub.requests`; setting :attr:`LoopbackHub.fail_status` makes every endpoint answer that
HTTP status (a Hub outage).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

_SHA = re.compile(r"^[0-9a-f]{40}$")
_REPO = r"(?P<repo>[^/]+/[^/]+)"


def git_blob_sha1(data: bytes) -> str:
    """The git object id of ``data`` (what the Hub reports as a regular file's ``oid`` and ETag)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class Commit:
    sha: str
    parent: str | None
    message: str
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_id: str
    private: bool
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    pull_requests: int = 0

    def resolve(self, revision: str) -> Commit | None:
        """A branch, tag, ``refs/pr/N`` or full commit sha → its commit."""
        sha = self.branches.get(revision) or self.tags.get(revision)
        if sha is None and _SHA.match(revision):
            sha = revision
        return self.commits.get(sha) if sha else None


class HubError(Exception):
    def __init__(self, status: int, code: str | None, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class LoopbackHub:
    """An HTTP server on ``127.0.0.1`` speaking the Hub's repo, commit and download API (the subset the client uses)."""

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.fail_status: int | None = None
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> LoopbackHub:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # ------------------------------------------------------------------ API
    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return self.repos[repo_id]

    def _commit(self, repo: Repo, revision: str) -> Commit:
        commit = repo.resolve(revision)
        if commit is None:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")
        return commit

    def create_repo(self, body: dict) -> tuple[int, dict]:
        repo_id = f"{body['organization']}/{body['name']}" if body.get("organization") else body["name"]
        url = f"{self.endpoint}/{repo_id}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this model repo", "url": url}
        repo = Repo(repo_id, private=body.get("visibility") == "private")
        initial = Commit(_commit_sha(None, "initial commit", {}), None, "initial commit", {})
        repo.commits[initial.sha] = initial
        repo.branches["main"] = initial.sha
        self.repos[repo_id] = repo
        return 200, {"url": url, "name": repo_id, "id": repo_id}

    def preupload(self, repo_id: str, body: dict) -> dict:
        self._repo(repo_id)
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False, "oid": None} for f in body["files"]]
        return {"files": files, "commitOid": None}

    def commit(self, repo_id: str, revision: str, lines: list[dict], create_pr: bool) -> dict:
        repo = self._repo(repo_id)
        header = next(line["value"] for line in lines if line["key"] == "header")
        if create_pr:
            base = self._commit(repo, revision)
            repo.pull_requests += 1
            branch = f"refs/pr/{repo.pull_requests}"
        elif revision in repo.branches:
            base, branch = repo.commits[repo.branches[revision]], revision
        else:
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision} is not a branch")
        if header.get("parentCommit") and header["parentCommit"] != base.sha:
            raise HubError(412, None, f"parent commit {header['parentCommit']} is not the head of {revision}")
        files = dict(base.files)
        for line in lines:
            value = line["value"]
            if line["key"] == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif line["key"] == "deletedFile":
                files.pop(value["path"], None)
            elif line["key"] == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: d for p, d in files.items() if not p.startswith(prefix)}
            elif line["key"] != "header":
                raise HubError(400, None, f"this loopback hub stores regular files only, got a {line['key']!r}")
        message = header["summary"] + ("\n\n" + header["description"] if header.get("description") else "")
        commit = Commit(_commit_sha(base.sha, message, files), base.sha, message, files)
        repo.commits[commit.sha] = commit
        repo.branches[branch] = commit.sha
        pr_number = repo.pull_requests if create_pr else None
        return {
            "commitUrl": f"{self.endpoint}/{repo_id}/commit/{commit.sha}",
            "commitOid": commit.sha,
            "pullRequestUrl": f"{self.endpoint}/{repo_id}/discussions/{pr_number}" if create_pr else None,
        }

    def create_branch(self, repo_id: str, branch: str, body: dict) -> tuple[int, dict]:
        repo = self._repo(repo_id)
        if branch in repo.branches:
            return 409, {"error": f"Reference already exists: {branch}"}
        repo.branches[branch] = self._commit(repo, body.get("startingPoint") or "main").sha
        return 200, {}

    def create_tag(self, repo_id: str, revision: str, body: dict) -> tuple[int, dict]:
        repo = self._repo(repo_id)
        if body["tag"] in repo.tags:
            return 409, {"error": f"Tag already exists: {body['tag']}"}
        repo.tags[body["tag"]] = self._commit(repo, revision).sha
        return 200, {}

    def revision_info(self, repo_id: str, revision: str) -> dict:
        repo = self._repo(repo_id)
        commit = self._commit(repo, revision)
        return {
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit.sha,
            "private": repo.private,
            "siblings": [{"rfilename": p} for p in sorted(commit.files)],
        }

    def tree(self, repo_id: str, revision: str, path: str, recursive: bool) -> list[dict]:
        commit = self._commit(self._repo(repo_id), revision)
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        entries: dict[str, dict] = {}
        for file, data in sorted(commit.files.items()):
            if not file.startswith(prefix):
                continue
            parts = file[len(prefix) :].split("/")
            for depth in range(1, len(parts)):  # the folders on the way
                folder = prefix + "/".join(parts[:depth])
                if depth == 1 or recursive:
                    entries.setdefault(folder, {"type": "directory", "oid": _folder_oid(folder), "path": folder})
                if not recursive:
                    break
            if recursive or len(parts) == 1:
                entries[file] = {"type": "file", "oid": git_blob_sha1(data), "size": len(data), "path": file}
        if prefix and not entries:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        return list(entries.values())

    def resolve_file(self, repo_id: str, revision: str, path: str) -> tuple[Commit, bytes]:
        commit = self._commit(self._repo(repo_id), revision)
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {revision}")
        return commit, commit.files[path]


def _commit_sha(parent: str | None, message: str, files: dict[str, bytes]) -> str:
    digest = hashlib.sha1(f"parent {parent}\n{message}\n".encode())
    for path in sorted(files):
        digest.update(f"{path} {git_blob_sha1(files[path])}\n".encode())
    return digest.hexdigest()


def _folder_oid(path: str) -> str:
    return hashlib.sha1(path.encode()).hexdigest()


def _validate_card(content: str) -> tuple[int, dict]:
    """What ``/api/validate-yaml`` checks here: the front matter is a YAML mapping whose model-index parses."""
    from huggingface_hub.repocard_data import model_index_to_eval_results

    match = re.match(r"^---\n(.*?)\n---\n", content, flags=re.S)
    if match is None:
        return 200, {"warnings": [{"message": "empty or missing yaml metadata in repo card"}]}
    try:
        metadata = yaml.safe_load(match.group(1))
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a mapping")
        if "model-index" in metadata:
            model_index_to_eval_results(metadata["model-index"])
    except (yaml.YAMLError, ValueError, KeyError, TypeError) as err:
        return 400, {"errors": [{"message": f"invalid metadata: {err}"}]}
    return 200, {"warnings": []}


def _handler_for(hub: LoopbackHub) -> type[BaseHTTPRequestHandler]:
    api = rf"^/api/models/{_REPO}"
    routes = [
        ("POST", re.compile(r"^/api/repos/create$"), "create_repo"),
        ("POST", re.compile(r"^/api/validate-yaml$"), "validate_yaml"),
        ("POST", re.compile(api + r"/preupload/(?P<rev>[^/]+)$"), "preupload"),
        ("POST", re.compile(api + r"/commit/(?P<rev>[^/]+)$"), "commit"),
        ("POST", re.compile(api + r"/branch/(?P<rev>[^/]+)$"), "branch"),
        ("POST", re.compile(api + r"/tag/(?P<rev>[^/]+)$"), "tag"),
        ("GET", re.compile(api + r"/revision/(?P<rev>[^/]+)$"), "revision"),
        ("GET", re.compile(api + r"$"), "revision"),
        ("GET", re.compile(api + r"/tree/(?P<rev>[^/]+)(?P<path>/.*)?$"), "tree"),
        ("GET", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
        ("HEAD", re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"), "resolve"),
    ]

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, payload, headers: dict[str, str] | None = None) -> None:
            self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

        def _dispatch(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with hub._lock:
                hub.requests.append((self.command, url.path))
                if hub.fail_status is not None:
                    self._json(hub.fail_status, {"error": "loopback hub: simulated outage"})
                    return
                for method, pattern, name in routes:
                    match = pattern.match(url.path) if method == self.command else None
                    if match is not None:
                        break
                else:
                    self._json(404, {"error": f"no route {self.command} {url.path}"})
                    return
                args = {k: unquote(v) for k, v in match.groupdict().items() if v is not None}
                query = parse_qs(url.query)
                try:
                    self._route(name, args, body, query)
                except HubError as err:
                    headers = {"X-Error-Message": err.message}
                    if err.code:
                        headers["X-Error-Code"] = err.code
                    self._json(err.status, {"error": err.message}, headers)

        def _route(self, name: str, args: dict, body: bytes, query: dict) -> None:
            repo_id = args.get("repo")
            if name == "create_repo":
                self._json(*hub.create_repo(json.loads(body)))
            elif name == "validate_yaml":
                self._json(*_validate_card(json.loads(body)["content"]))
            elif name == "preupload":
                self._json(200, hub.preupload(repo_id, json.loads(body)))
            elif name == "commit":
                lines = [json.loads(line) for line in body.splitlines() if line.strip()]
                self._json(200, hub.commit(repo_id, args["rev"], lines, query.get("create_pr") == ["1"]))
            elif name == "branch":
                self._json(*hub.create_branch(repo_id, args["rev"], json.loads(body or b"{}")))
            elif name == "tag":
                self._json(*hub.create_tag(repo_id, args["rev"], json.loads(body)))
            elif name == "revision":
                self._json(200, hub.revision_info(repo_id, args.get("rev", "main")))
            elif name == "tree":
                recursive = query.get("recursive", ["False"])[0].lower() in ("1", "true")
                self._json(200, hub.tree(repo_id, args["rev"], args.get("path", ""), recursive))
            elif name == "resolve":
                commit, data = hub.resolve_file(repo_id, args["rev"], args["path"])
                etag = f'"{git_blob_sha1(data)}"'
                self._send(200, data, {"X-Repo-Commit": commit.sha, "ETag": etag, "Content-Type": "application/octet-stream"})

        do_GET = do_POST = do_HEAD = _dispatch

    return Handler


@pytest.fixture
def loopback_hub(monkeypatch):
    """A running :class:`LoopbackHub`, with the hub client switched online and pointed at it (loopback only: the
    conftest network guard still refuses everything else)."""
    from huggingface_hub import constants

    with LoopbackHub() as hub:
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
        monkeypatch.setenv("HF_TOKEN", "hf_loopback")
        yield hub
