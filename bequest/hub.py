"""Publishing an exported folder (weights, tokenizer, model card, deployment artifacts) to the Hugging Face hub."""

from __future__ import annotations

from pathlib import Path

from bequest.errors import BequestError


def check_repo_id(repo_id: str) -> str:
    """Refuse a malformed repo id before any work is done."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise BequestError(f"--push-to-hub {repo_id}: not a hub repo id ({str(error).splitlines()[0][:200]}): give "
                           "user-or-org/name") from None
    if "/" not in repo_id:
        raise BequestError(f"--push-to-hub {repo_id}: give the owner too, as user-or-org/{repo_id}")
    return repo_id


def push_folder(folder: Path, repo_id: str, private: bool = False) -> str:
    """Upload `folder` to the hub model repo `repo_id` (created when missing); returns the commit's URL."""
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        commit = api.upload_folder(folder_path=str(folder), repo_id=repo_id, repo_type="model",
                                   commit_message=f"{Path(folder).name}, exported by bequest")
    except Exception as error:  # no network, no token, no right to the repo: huggingface_hub's many error classes
        reason = (str(error).splitlines() or [""])[0][:200]
        raise BequestError(f"cannot push {folder} to the hub as {repo_id} ({type(error).__name__}: {reason}): check the "
                           "network, the repo id and your token (hf auth login, or HF_TOKEN)") from None
    return str(getattr(commit, "commit_url", commit))


def push_students(run_dir: Path, students: list[str], repo_id: str, private: bool = False) -> dict[str, str]:
    """Every student of a run: the only one to `repo_id`, several to `repo_id`-<name>."""
    targets = {name: repo_id if len(students) == 1 else f"{repo_id}-{name}" for name in students}
    return {name: push_folder(Path(run_dir) / name, target, private) for name, target in targets.items()}
