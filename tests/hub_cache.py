"""A Hugging Face hub-cache layout made from a packaged model, for offline tests of
hub model ids: ``models--<org>--<name>/refs/main`` names a snapshot whose files are
links to the model folder's, as ``huggingface_hub`` lays out a download."""

from __future__ import annotations

from pathlib import Path

from autellix_engine.frontend.models import resolve_model

#: The id the packaged ``tiny`` model gets in the layout.
HUB_ID = "autellix/tiny-hub"
COMMIT = "0123456789abcdef0123456789abcdef01234567"  # a snapshot is named by its commit


def hub_cache(root: Path, repo_id: str = HUB_ID, source: str = "tiny") -> Path:
    """A hub cache under ``root`` holding ``source``'s files as ``repo_id``; its path
    (for ``HF_HUB_CACHE``)."""
    folder = resolve_model(source).path
    cache = root / "hub"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True, exist_ok=True)
    for f in folder.iterdir():
        if f.is_file() and not f.name.startswith("."):
            link = snapshot / f.name
            if not link.exists():
                link.symlink_to(f)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return cache
