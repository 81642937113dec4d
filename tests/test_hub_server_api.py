"""The local Hub: the client calls users reach for after push/pull (listing, discussions, copies, moves,
squashes, auth checks), each through the real huggingface_hub client (0.36 in the Optimum lane, 2.x here)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationCopy, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

from tests.hub_fixtures import LocalHub

REPO = "org/tiny"
LFS_DATA = b"\x00\x01" * 5000


def _seed(hub: LocalHub, repo: str = REPO, private: bool = False, repo_type: str = "model") -> str:
    api = hub.api()
    api.create_repo(repo, private=private, repo_type=repo_type)
    return api.create_commit(repo, [
        CommitOperationAdd("README.md", b"---\nlicense: mit\ntags: [demo]\n---\n# hi"),
        CommitOperationAdd("config.json", b'{"architectures": ["BertForSequenceClassification"]}'),
        CommitOperationAdd("model.safetensors", LFS_DATA),
    ], commit_message="seed", repo_type=repo_type).oid


def test_list_models_and_datasets_by_author_and_search(local_hub: LocalHub) -> None:
    api = local_hub.api()
    _seed(local_hub, "org/alpha-bert")
    _seed(local_hub, "org/beta-bert", private=True)
    _seed(local_hub, "other/alpha-gpt")
    _seed(local_hub, "org/reviews", repo_type="dataset")
    assert sorted(m.id for m in api.list_models(author="org")) == ["org/alpha-bert", "org/beta-bert"]
    assert sorted(m.id for m in api.list_models(search="alpha")) == ["org/alpha-bert", "other/alpha-gpt"]
    assert [m.id for m in api.list_models(author="org", search="ALPHA")] == ["org/alpha-bert"]
    assert len(list(api.list_models(limit=2))) == 2
    model = next(iter(api.list_models(search="alpha-bert")))
    assert model.pipeline_tag == "text-classification" and "demo" in model.tags and len(model.sha) == 40
    anon = local_hub.api(token=False)
    assert sorted(m.id for m in anon.list_models(author="org")) == ["org/alpha-bert"]  # private stays hidden
    assert [d.id for d in api.list_datasets(author="org")] == ["org/reviews"]
    assert [d.id for d in api.list_datasets(search="rev")] == ["org/reviews"]
    assert list(api.list_datasets(author="nobody")) == []


def test_pull_request_is_listed_detailed_closed_reopened_and_merged(local_hub: LocalHub) -> None:
    base = _seed(local_hub)
    api = local_hub.api()
    pr = api.create_commit(REPO, [CommitOperationAdd("new.txt", b"new")], commit_message="Add new.txt",
                           commit_description="please merge", create_pr=True, parent_commit=base)
    disc = api.create_discussion(REPO, title="A question", description="why?")
    listed = {d.num: d for d in api.get_repo_discussions(REPO)}
    assert set(listed) == {1, 2} and disc.num == 2 and not disc.is_pull_request
    assert listed[1].is_pull_request and listed[1].title == "Add new.txt" and listed[1].status == "open"
    assert [d.num for d in api.get_repo_discussions(REPO, discussion_type="pull_request")] == [1]
    details = api.get_discussion_details(REPO, 1)
    assert details.target_branch == "refs/heads/main" and details.conflicting_files == []
    assert details.git_reference == "refs/pr/1"
    assert any(getattr(e, "oid", None) == pr.oid for e in details.events)  # the commit is an event
    assert api.change_discussion_status(REPO, 1, "closed", comment="not now").new_status == "closed"
    assert api.get_discussion_details(REPO, 1).status == "closed"
    with pytest.raises(HfHubHTTPError):
        api.merge_pull_request(REPO, 1)  # a closed pull request is not merged
    api.change_discussion_status(REPO, 1, "open")
    api.comment_discussion(REPO, 1, "LGTM")
    api.merge_pull_request(REPO, 1, comment="merging")
    merged = api.get_discussion_details(REPO, 1)
    assert merged.status == "merged" and merged.merge_commit_oid == pr.oid
    assert [d.num for d in api.get_repo_discussions(REPO, discussion_status="open")] == [2]
    assert "new.txt" in api.list_repo_files(REPO)
    with pytest.raises(HfHubHTTPError) as exc:
        api.merge_pull_request(REPO, 2)  # a discussion is not a pull request
    assert exc.value.response.status_code == 400
    with pytest.raises(HfHubHTTPError) as exc:
        local_hub.api(token=False).change_discussion_status(REPO, 2, "closed")
    assert exc.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as exc:
        api.get_discussion_details(REPO, 9)
    assert exc.value.response.status_code == 404


def test_upload_folder_of_text_files_over_64_mb_is_accepted(local_hub: LocalHub, tmp_path: Path) -> None:
    local_hub.api().create_repo(REPO)
    folder = tmp_path / "texts"
    folder.mkdir()
    line = b"the quick brown fox jumps over the lazy dog 0123456789\n"
    for i in range(7):  # 7 x 9.5 MB of text, each under the 10 MB LFS threshold: ~66 MB inline
        (folder / f"part{i}.txt").write_bytes((line * (9_500_000 // len(line) + 1))[:9_500_000 - i])
    info = local_hub.api().upload_folder(folder_path=folder, repo_id=REPO)
    files = {f.path: f for f in local_hub.api().list_repo_tree(REPO, revision=info.oid)}
    assert all(files[f"part{i}.txt"].size == 9_500_000 - i for i in range(7))
    got = hf_hub_download(REPO, "part6.txt", revision=info.oid, cache_dir=tmp_path / "c")
    assert Path(got).read_bytes() == (folder / "part6.txt").read_bytes()


def test_copy_of_lfs_and_regular_files(local_hub: LocalHub, tmp_path: Path) -> None:
    _seed(local_hub)
    api = local_hub.api()
    info = api.create_commit(REPO, [
        CommitOperationCopy("model.safetensors", "backup/model.safetensors"),
        CommitOperationCopy("config.json", "backup/config.json"),
    ], commit_message="copy")
    files = {f.path: f for f in api.list_repo_tree(REPO, path_in_repo="backup", revision=info.oid)}
    assert files["backup/model.safetensors"].lfs.sha256 == hashlib.sha256(LFS_DATA).hexdigest()
    assert files["backup/model.safetensors"].size == len(LFS_DATA)
    got = hf_hub_download(REPO, "backup/model.safetensors", revision=info.oid, cache_dir=tmp_path)
    assert Path(got).read_bytes() == LFS_DATA


def test_move_repo_super_squash_and_auth_check(local_hub: LocalHub) -> None:
    _seed(local_hub)
    api = local_hub.api()
    api.upload_file(path_or_fileobj=b"v2", path_in_repo="notes.txt", repo_id=REPO)
    api.move_repo(REPO, "org/renamed")
    with pytest.raises(RepositoryNotFoundError):
        api.model_info(REPO)
    assert "notes.txt" in api.list_repo_files("org/renamed")
    api.create_repo("org/taken")
    with pytest.raises(HfHubHTTPError) as exc:
        api.move_repo("org/renamed", "org/taken")
    assert exc.value.response.status_code == 409
    files_before = sorted(api.list_repo_files("org/renamed"))
    assert len(api.list_repo_commits("org/renamed")) == 3
    api.super_squash_history("org/renamed", commit_message="squashed")
    commits = api.list_repo_commits("org/renamed")
    assert [c.title for c in commits] == ["squashed"] and sorted(api.list_repo_files("org/renamed")) == files_before
    api.auth_check("org/renamed")
    with pytest.raises(RepositoryNotFoundError):
        api.auth_check("org/absent")
    api.update_repo_settings("org/renamed", private=True)
    with pytest.raises(RepositoryNotFoundError):
        local_hub.api(token=False).auth_check("org/renamed")


def test_repo_ids_are_case_insensitive_and_case_preserving(local_hub: LocalHub, tmp_path: Path) -> None:
    api = local_hub.api()
    api.create_repo("Org/MixedCase")
    assert api.model_info("org/mixedcase").id == "Org/MixedCase"
    with pytest.raises(HfHubHTTPError) as exc:
        api.create_repo("ORG/mixedcase")
    assert exc.value.response.status_code == 409
    api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="org/MIXEDCASE")
    assert Path(hf_hub_download("ORG/mixedCASE", "x.txt", cache_dir=tmp_path)).read_bytes() == b"x"
    assert [m.id for m in api.list_models(author="org")] == ["Org/MixedCase"]


def test_repo_gitattributes_decides_what_is_lfs(local_hub: LocalHub) -> None:
    api = local_hub.api()
    api.create_repo(REPO)
    api.create_commit(REPO, [CommitOperationAdd(".gitattributes", b"*.csv filter=lfs diff=lfs merge=lfs -text\n"
                                                                  b"data/** filter=lfs diff=lfs merge=lfs -text\n")],
                      commit_message="attrs")
    api.create_commit(REPO, [CommitOperationAdd("table.csv", b"a,b\n1,2\n"),
                             CommitOperationAdd("data/notes.md", b"# notes\n"),
                             CommitOperationAdd("readme.txt", b"plain"),
                             CommitOperationAdd("weights.bin", b"text, but *.bin is no longer LFS")],
                      commit_message="files")
    info = {s.rfilename: s for s in api.model_info(REPO, files_metadata=True).siblings}
    assert info["table.csv"].lfs is not None and info["data/notes.md"].lfs is not None
    assert info["readme.txt"].lfs is None and info["weights.bin"].lfs is None
    raw = httpx.get(f"{local_hub.url}/api/models/{REPO}/tree/main").json()
    assert {e["path"] for e in raw if "lfs" in e} == {"table.csv"}


def test_listing_follows_pages(local_hub: LocalHub, monkeypatch: pytest.MonkeyPatch) -> None:
    import hubtune.hub_server.community as community

    monkeypatch.setattr(community, "PAGE_SIZE", 2)  # pages of 2: the client follows Link rel="next"
    for i in range(5):
        local_hub.api().create_repo(f"org/m{i}")
    assert [m.id for m in local_hub.api().list_models(author="org")] == [f"org/m{i}" for i in range(5)]
    first = httpx.get(f"{local_hub.url}/api/models", params={"author": "org"})
    assert len(first.json()) == 2 and 'rel="next"' in first.headers["Link"]


def test_repo_stored_under_its_old_spelling_is_still_found(local_hub: LocalHub) -> None:
    """A root written before ids were case-folded keeps its repos: Org/Old stored as Org/Old is found."""
    _seed(local_hub, "org/old")
    base = local_hub.root / "repos" / "models"
    (base / "org").rename(base / "Org")
    (base / "Org" / "old").rename(base / "Org" / "Old")
    assert "config.json" in local_hub.api().list_repo_files("Org/Old")
    with pytest.raises(HfHubHTTPError) as exc:
        local_hub.api().create_repo("Org/Old")
    assert exc.value.response.status_code == 409


def test_empty_pull_request_gets_commits_then_merges(local_hub: LocalHub) -> None:
    _seed(local_hub)
    api = local_hub.api()
    pr = api.create_pull_request(REPO, title="Empty first", description="commits follow")
    assert pr.is_pull_request and pr.num == 1 and pr.git_reference == "refs/pr/1"
    api.upload_file(path_or_fileobj=b"later", path_in_repo="later.txt", repo_id=REPO, revision="refs/pr/1")
    assert "later.txt" not in api.list_repo_files(REPO)
    api.rename_discussion(REPO, 1, "Now with a commit")
    api.merge_pull_request(REPO, 1)
    assert "later.txt" in api.list_repo_files(REPO)
    details = api.get_discussion_details(REPO, 1)
    assert details.title == "Now with a commit" and details.status == "merged"
    assert [type(e).__name__ for e in details.events][:2] == ["DiscussionComment", "DiscussionCommit"]
