"""The user docs speak of the product: no issue numbers, no development history, no
files outside the repository, and every link inside them resolves."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: What a user doc must not say: our issue tracker and our development history.
FORBIDDEN = {
    "an issue number": r"(?<![\w/&#-])#\d+\b",
    "the issue tracker": r"\bissues?\b",
    "files outside the repository": r"shared/notes|\.\./shared|platform notes",
    "development history": r"\b(this|last|first|earlier|previous|next) (round|session)s?\b",
}


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_a_user_doc_speaks_of_the_product(doc):
    text = doc.read_text()
    found = [f"{what}: line {text.count(chr(10), 0, m.start()) + 1}: {m.group(0)!r}"
             for what, pattern in FORBIDDEN.items()
             for m in re.finditer(pattern, text, flags=re.IGNORECASE)]
    assert not found, found


def _anchors(doc: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to dashes."""
    out = set()
    for line in doc.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            out.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return out


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_link_inside_the_repository_resolves(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
        if re.match(r"[a-z]+://", target) or target.startswith("mailto:"):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert not broken, broken
