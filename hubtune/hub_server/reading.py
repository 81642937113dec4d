"""HTTP routes of the local Hub that read a repo: info, ``list_repo_tree``, ``get_paths_info``, refs, commits
and file downloads (``/resolve/``, with the ETag and ``X-Repo-Commit`` headers the clients cache by).

A mixin of ``app.HubApp``: it uses the app's ``store`` and its access check (``_repo``). Imports ``limits``,
``listing``, ``store``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response

from hubtune.hub_server.limits import HttpError
from hubtune.hub_server.listing import repo_info
from hubtune.hub_server.store import Commit, Repo, check_path, git_blob_oid, lfs_pointer


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class ReadRoutes:
    store: Any
    _repo: Any

    def _info(self, request: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        return JSONResponse(repo_info(self.store, repo, self.store.resolve(repo, rev)))

    def _entry_json(self, repo: Repo, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        e = commit.files[path]
        out: dict[str, Any] = {"type": "file", "oid": e["oid"], "size": e["size"], "path": path}
        if e["lfs"]:
            out["lfs"] = {"oid": e["sha256"], "size": e["size"],
                          "pointerSize": len(lfs_pointer(e["sha256"], e["size"]))}
        if expand:
            last = self._last_commit(repo, commit, path)
            out["lastCommit"] = {"id": last.id, "title": last.title, "date": last.date}
        return out

    def _last_commit(self, repo: Repo, commit: Commit, path: str) -> Commit:
        """The newest commit (first-parent walk) that changed ``path``."""
        current = commit
        while current.parents:
            parent = self.store.get_commit(repo, current.parents[0])
            if parent.files.get(path) != current.files.get(path):
                return current
            current = parent
        return current

    @staticmethod
    def _dir_json(commit: Commit, path: str) -> dict[str, Any]:
        listing = "\n".join(f"{p}:{e['oid']}" for p, e in sorted(commit.files.items()) if p.startswith(path + "/"))
        return {"type": "directory", "oid": git_blob_oid(listing.encode()), "size": 0, "path": path}

    def _tree(self, request: Request, repo_type: str, repo_id: str, rev: str, path: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        recursive = _truthy(request.query_params.get("recursive"))
        expand = _truthy(request.query_params.get("expand"))
        path = check_path(path.strip("/")) if path.strip("/") else ""
        prefix = path + "/" if path else ""
        under = [p for p in commit.files if p.startswith(prefix)]
        if path and not under:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        files: list[str] = []
        dirs: set[str] = set()
        for p in sorted(under):
            rel_parts = p[len(prefix):].split("/")
            for depth in range(1, len(rel_parts)):
                if depth == 1 or recursive:
                    dirs.add(prefix + "/".join(rel_parts[:depth]))
            if len(rel_parts) == 1 or recursive:
                files.append(p)
        out = [self._dir_json(commit, d) for d in sorted(dirs)]
        out += [self._entry_json(repo, commit, p, expand) for p in files]
        out.sort(key=lambda item: item["path"])
        return JSONResponse(out)

    def _paths_info(
        self, request: Request, repo_type: str, repo_id: str, rev: str, paths: list[str], expand: bool
    ) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        out = []
        for raw in paths:
            path = check_path(raw.strip("/"))
            if path in commit.files:
                out.append(self._entry_json(repo, commit, path, expand))
            elif any(p.startswith(path + "/") for p in commit.files):
                out.append(self._dir_json(commit, path))
        return JSONResponse(out)

    def _refs(self, request: Request, repo_type: str, repo_id: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        refs = self.store.refs(repo)

        def fmt(kind: str, name: str, target: str) -> dict[str, str]:
            return {"name": name, "ref": f"refs/{kind}/{name}", "targetCommit": target}

        body: dict[str, Any] = {
            "branches": [fmt("heads", n, t) for n, t in sorted(refs["branches"].items())],
            "tags": [fmt("tags", n, t) for n, t in sorted(refs["tags"].items())],
            "converts": [],
        }
        if _truthy(request.query_params.get("include_prs")):
            body["pullRequests"] = [fmt("pr", n, t) for n, t in sorted(refs["pulls"].items(), key=lambda x: int(x[0]))]
        return JSONResponse(body)

    def _commits(self, request: Request, repo_type: str, repo_id: str, rev: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        return JSONResponse([
            {"id": c.id, "title": c.title, "message": c.message, "date": c.date,
             "authors": [{"user": c.author}], "parents": c.parents}
            for c in self.store.history(repo, rev)
        ])

    def _resolve_file(self, request: Request, repo_type: str, repo_id: str, rev: str, raw_rest: str) -> Response:
        repo = self._repo(request, repo_type, repo_id)
        commit = self.store.resolve(repo, rev)
        path = check_path(unquote(raw_rest))
        entry = commit.files.get(path)
        if entry is None:
            raise HttpError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.id})
        etag = entry["sha256"] if entry["lfs"] else entry["oid"]
        headers = {
            "X-Repo-Commit": commit.id,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f"inline; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
        }
        if entry["lfs"]:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(entry["size"])
        return FileResponse(
            self.store.blob_path(entry["sha256"]), headers=headers, media_type="application/octet-stream"
        )
