"""Staged publishing for ``train-and-push``: propose, verify, then move the branch.

``stage`` commits the folder (mirrored, as ``hubtune.publish.hub.push``) on a pull request opened from the
target branch's head; once verified, ``promote`` merges it so the branch moves there (a fast-forward only).
``check_release_tag`` refuses, before any work, a release tag that could not be given.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from hubtune.core.config import resolve_tag
from hubtune.core.errors import HubError, HubRepoNotFoundError
from hubtune.publish.hub import (
    HubSession,
    PushOptions,
    PushResult,
    check_folder,
    client_endpoint,
    commit_plan,
    commit_text,
    open_repo,
    open_session,
    plan_mirror,
    resolve_endpoint,
    resolve_token,
)


@dataclass
class StagedPush:
    """A folder committed on a pull request opened from the target branch's head, not yet on the branch."""

    push: PushResult  # commit_oid: the staged commit (the target's head when nothing changed)
    target: str  # the branch that moves once the staged commit is verified
    base: str  # the target's head the staged commit sits on (its parent)
    staging_ref: str | None  # "refs/pr/N"; None when the target already equals the folder
    pr_num: int | None = None
    release: str | None = None  # nothing changed: the tag matching the template already on the target's head


def stage(opts: PushOptions) -> StagedPush:
    """Commit the folder (mirrored, as ``push``) on a pull request opened from the head of ``opts.revision``.

    Nothing on the target branch or the tags changes. With ``opts.tag`` (a name or a template, see
    ``resolve_tag``), a tag that would collide is refused here, before anything is pushed.
    """
    folder, files, excluded = check_folder(opts)
    hub = open_session(opts)
    target = opts.revision or "main"
    with client_endpoint(hub.endpoint):
        repo_url, created = open_repo(hub, opts, target)
        plan = plan_mirror(hub, opts, folder, files, target)
        release = _precheck_tag(hub, opts.repo_id, opts.repo_type, opts.tag, plan.base if plan.empty else "") \
            if opts.tag else None
        ref = num = pr_url = None
        commit_oid, commit_url = plan.base, hub.commit_url(opts.repo_id, opts.repo_type, plan.base)
        if not plan.empty:
            info_c = commit_plan(hub, opts, folder, files, plan, target, create_pr=True)
            commit_oid, commit_url, pr_url = str(info_c.oid), str(info_c.commit_url), str(info_c.pr_url)
            num = int(pr_url.rstrip("/").rsplit("/", 1)[-1])
            ref = f"refs/pr/{num}"
        private = bool(hub.call("reading the repo", lambda: hub.api.repo_info(
            opts.repo_id, repo_type=opts.repo_type)).private)
    pushed = PushResult(
        repo_id=opts.repo_id, repo_type=opts.repo_type, url=repo_url, endpoint=hub.endpoint,
        revision=ref or target, commit_oid=commit_oid, commit_url=commit_url, committed=ref is not None,
        created=created, private=private, pr_url=pr_url,
        message=commit_text(folder, files, opts.commit_message, plan.deleted)[0], files=files, excluded=excluded,
        changed=plan.changed, deleted=plan.deleted, kept=plan.kept,
    )
    return StagedPush(push=pushed, target=target, base=plan.base, staging_ref=ref, pr_num=num, release=release)


def _precheck_tag(hub: HubSession, repo_id: str, repo_type: str, template: str, commit: str) -> str | None:
    """Refuse, before anything is pushed, a tag name taken by a commit other than ``commit`` (the one this run
    will release; "" when it is not known yet); returns the tag matching the template already on ``commit``."""
    _, tags = hub.refs(repo_id, repo_type)
    name, exists = resolve_tag(template, tags, commit)
    if exists:
        return name
    if name in tags and "{short_sha}" not in template:
        raise HubError(
            f"tag {name!r} already exists on {repo_id} at {tags[name][:12]}, not at the commit this run would "
            "release; nothing was pushed; expected an unused tag: set publish.tag (or --tag) to a template such "
            "as 'v{n}' or '{date}-{short_sha}'"
        )
    return None


def check_release_tag(repo_id: str, tag: str, revision: str | None = None, *, repo_type: str = "model",
                      endpoint: str | None = None, token: str | None = None) -> None:
    """Before any work: refuse a ``tag`` (name or template) that the release of ``repo_id@revision`` cannot get."""
    hub = HubSession(resolve_endpoint(endpoint), resolve_token(token), 4, 0.5)
    with client_endpoint(hub.endpoint), contextlib.suppress(HubRepoNotFoundError):  # a new repo has no tags
        _precheck_tag(hub, repo_id, repo_type, tag, hub.refs(repo_id, repo_type)[0].get(revision or "main", ""))


def promote(staged: StagedPush, *, endpoint: str | None = None, token: str | None = None,
            comment: str | None = None, retries: int = 4) -> str:
    """Move the target branch to the staged (verified) commit by merging its pull request; the new head. Only a
    fast-forward: if the target moved since staging, HubError and nothing changes. A Hub that squashes the merge
    into a new commit is accepted when that commit's files equal the staged commit's, file for file."""
    p = staged.push
    if staged.pr_num is None:
        return p.commit_oid
    hub = HubSession(resolve_endpoint(endpoint or p.endpoint), resolve_token(token), retries, 0.5)
    where = f"the verified commit stays at {staged.staging_ref} ({p.commit_oid})"
    with client_endpoint(hub.endpoint):
        head = hub.refs(p.repo_id, p.repo_type)[0].get(staged.target)
        if head != staged.base:
            raise HubError(
                f"{p.repo_id}@{staged.target} moved while the run verified (now at {(head or 'nothing')[:12]}, "
                f"staged on {staged.base[:12]}): not a fast-forward, {staged.target} and the tags are unchanged; "
                f"{where}; expected no other writer: re-run to stage on the new head"
            )
        hub.call(f"merging {staged.staging_ref} into {staged.target}", lambda: hub.api.merge_pull_request(
            p.repo_id, staged.pr_num, comment=comment, repo_type=p.repo_type))
        head = hub.refs(p.repo_id, p.repo_type)[0].get(staged.target) or ""
        if head != p.commit_oid and hub.tree(p.repo_id, p.repo_type, head) != hub.tree(
                p.repo_id, p.repo_type, p.commit_oid):
            raise HubError(
                f"merging {staged.staging_ref} left {p.repo_id}@{staged.target} at {head[:12]}, whose files differ "
                f"from the verified commit; {where}; expected a fast-forward: check the repo's history"
            )
    return head
