"""The README and docs/: a short front door, every page linked, every relative link resolving."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 260

# [text](target) and ![alt](target), with an optional "title"; the target is group 1.
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
INLINE_CODE = re.compile(r"`+[^`]*`+")
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # https:, mailto:, ...


def pages() -> list[Path]:
    """The README and every page of docs/, the files whose links are checked."""
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


def prose_lines(text: str) -> list[str]:
    """The lines outside fenced code blocks, where links and headings mean something."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith(("```", "~~~")):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: lower case, punctuation dropped, spaces to -."""
    text = INLINE_CODE.sub(lambda code: code.group(0).strip("`"), heading.strip().lower())
    text = LINK.sub(lambda link: link.group(0)[1 : link.group(0).index("]")], text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's anchor in a markdown file, repeated headings numbered as GitHub does."""
    seen: dict[str, int] = {}
    found = set()
    for line in prose_lines(page.read_text(encoding="utf-8")):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        base = slug(heading.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(page: Path) -> list[str]:
    """Each relative link in a page whose file, or whose anchor in that file, does not exist."""
    broken = []
    for line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(INLINE_CODE.sub("", line)):
            if EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            linked = (page.parent / path_part).resolve() if path_part else page
            if not linked.exists():
                broken.append(f"{page.name}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.name}: {target}: no such heading in {linked.name}")
    return broken


@pytest.mark.parametrize("page", pages(), ids=lambda page: page.name)
def test_every_relative_link_resolves_to_a_file_and_heading(page: Path) -> None:
    assert broken_links(page) == []


def test_a_missing_file_or_heading_is_found_broken(tmp_path: Path) -> None:
    (tmp_path / "there.md").write_text("# A title\n\n## Its `code` part: one\n", encoding="utf-8")
    (tmp_path / "page.md").write_text(
        "[ok](there.md) [ok](there.md#its-code-part-one) [ok](#mine) ![no](gone.png)\n"
        "[no](there.md#elsewhere) `[code](not-a-link.md)` [web](https://example.org/x)\n"
        "## Mine\n```\n[fenced](not-a-link-either.md)\n```\n",
        encoding="utf-8",
    )
    assert broken_links(tmp_path / "page.md") == [
        "page.md: gone.png: no such file",
        "page.md: there.md#elsewhere: no such heading in there.md",
    ]


def test_repeated_headings_get_numbered_anchors(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("# Setup\n## Linux, ALSA\n## Setup\n", encoding="utf-8")
    assert anchors(page) == {"setup", "linux-alsa", "setup-1"}


def test_the_readme_is_a_front_door_that_links_every_docs_page() -> None:
    readme = README.read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= MAX_README_LINES
    linked = {target.partition("#")[0] for target in LINK.findall(readme)}
    docs = {f"docs/{page.name}" for page in pages()[1:]}
    assert docs and docs <= linked


def test_the_readme_gives_the_test_command_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.removeprefix("exec ") for line in ci.splitlines() if line.startswith("exec ")]
    assert len(commands) == 1  # .ci/run execs the one test command
    command = commands[0]
    assert command.split()[:1] == ["bash"] and (ROOT / command.split()[1]).is_file()
    whole = re.compile(rf"(?<![\w./-]){re.escape(command)}(?![\w./-])")
    assert whole.search(README.read_text(encoding="utf-8"))
