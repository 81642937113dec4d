"""HTTP routes of the local Hub for listings (``list_models``, ``list_datasets``) and discussions
(``get_repo_discussions``, ``get_discussion_details``, ``create_discussion``, ``comment_discussion``,
``change_discussion_status``, ``rename_discussion``, ``merge_pull_request``).

A mixin of ``app.HubApp``: it uses the app's ``store``, ``config`` and its access checks (``_repo``,
``_authed``). Imports ``discussions``, ``limits``, ``listing``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hubtune.hub_server import discussions
from hubtune.hub_server.limits import HttpError, as_str, json_object
from hubtune.hub_server.listing import PAGE_SIZE, list_repos
from hubtune.hub_server.validation import BadRequest


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class CommunityRoutes:
    store: Any
    config: Any
    _repo: Any
    _authed: Any
    _base: Any
    _repo_url: Any

    def _list(self, request: Request, repo_type: str) -> Response:
        """``list_models`` / ``list_datasets`` / ``list_spaces``: pages of ``limit`` (<= 1000), Link rel=next."""
        q = request.query_params
        try:
            limit = min(int(q.get("limit") or PAGE_SIZE), PAGE_SIZE)
            offset = int(q.get("cursor") or 0)
        except ValueError:
            raise BadRequest("'limit' and 'cursor' must be integers") from None
        items = list_repos(
            self.store, repo_type, can_see_private=self._authed(request) or self.config.token is None,
            author=q.get("author"), search=q.getlist("search"), filters=q.getlist("filter"), sort=q.get("sort"),
            descending=q.get("direction") == "-1" or (q.get("sort") is not None and q.get("direction") != "1"),
            full=_truthy(q.get("full")),
        )
        page = items[max(offset, 0):max(offset, 0) + max(limit, 1)]
        headers = {}
        if offset + len(page) < len(items):
            params = [(k, v) for k, v in q.multi_items() if k != "cursor"] + [("cursor", str(offset + len(page)))]
            headers["Link"] = f'<{self._base(request)}/api/{repo_type}s?{urlencode(params)}>; rel="next"'
        return JSONResponse(page, headers=headers)

    async def _discussions(self, request: Request, repo_type: str, repo_id: str, rest: list[str]) -> Response:
        m, user = request.method, self.config.user
        if not rest:
            if m == "GET":
                repo = self._repo(request, repo_type, repo_id)
                q = request.query_params
                try:
                    page = int(q.get("p") or 0)
                except ValueError:
                    raise BadRequest("'p' must be a page number") from None
                return JSONResponse(await run_in_threadpool(
                    discussions.list_page, self.store, repo, page=page, kind=q.get("type") or "all",
                    status=q.get("status") or "all", author=q.get("author")))
            if m == "POST":  # create_discussion / create_pull_request
                repo = self._repo(request, repo_type, repo_id, write=True)
                body = await json_object(request, "discussion body")
                num = await run_in_threadpool(
                    discussions.create, self.store, repo, title=as_str(body.get("title"), "'title'"),
                    description=as_str(body.get("description"), "'description'", ""), author=user,
                    pull_request=bool(body.get("pullRequest")))
                url = f"{self._repo_url(request, repo_type, repo.repo_id)}/discussions/{num}"
                return JSONResponse({"num": num, "url": url, "pullRequest": bool(body.get("pullRequest"))})
        if not rest or not rest[0].isdigit() or len(rest[0]) > 9 or len(rest) > 2:
            raise HttpError(404, f"no discussion route for {m} {'/'.join(rest)}")
        num = str(int(rest[0]))
        if len(rest) == 1 and m == "GET":
            repo = self._repo(request, repo_type, repo_id)
            refs = self.store.refs(repo)
            return JSONResponse(discussions.details(discussions.get(refs, num), repo.repo_id, repo_type, refs))
        if len(rest) != 2 or m != "POST":
            raise HttpError(404, f"no discussion route for {m} {'/'.join(rest)}")
        repo = self._repo(request, repo_type, repo_id, write=True)  # every change needs the right to write
        body = await json_object(request, f"{rest[1]} body")
        if rest[1] == "merge":  # merge_pull_request: fast-forward only
            comment = as_str(body.get("comment"), "'comment'", "") or None
            await run_in_threadpool(self.store.merge_pr, repo, num, author=user, comment=comment)
            return JSONResponse({"status": "merged"})
        if rest[1] == "status":
            event = await run_in_threadpool(
                discussions.change_status, self.store, repo, num, as_str(body.get("status"), "'status'"),
                as_str(body.get("comment"), "'comment'", "") or None, user)
            return JSONResponse({"newStatus": event})
        if rest[1] == "comment":
            event = await run_in_threadpool(discussions.add_comment, self.store, repo, num,
                                            as_str(body.get("comment"), "'comment'"), user)
            return JSONResponse({"newMessage": event})
        if rest[1] == "title":
            event = await run_in_threadpool(discussions.rename, self.store, repo, num,
                                            as_str(body.get("title"), "'title'"), user)
            return JSONResponse({"newTitle": event})
        raise HttpError(404, f"no discussion route for {m} {'/'.join(rest)}")

