"""The documentation stays true: the README's Python runs and every relative link resolves.

Code blocks: every ```python block of README.md is run, in order, in one namespace, in a
temporary working directory (so files a block writes land there).  A block the test
cannot run on this machine is marked by an HTML comment on the line just before its
fence, which Markdown does not show:

    <!-- docs-test: skip (the reason, e.g. needs a GPU or trains for minutes) -->

Keep runnable blocks small and CPU-quick: few envs, few steps.

Links: every relative link target in README.md and docs/*.md names an existing file, and
a ``#anchor`` names a heading of the target page (GitHub's slugs: lower case, spaces to
hyphens, punctuation dropped).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]

SKIP_MARK = re.compile(r"<!--\s*docs-test:\s*skip\b.*?-->")
FENCE = re.compile(r"^```(\w*)\s*$")


def code_blocks(path: Path) -> list[tuple[int, str, bool]]:
    """``(fence line, code, skipped)`` for each ```python block of ``path`` (lines from 1)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if opening.group(1) == "python":
            skipped = i > 0 and bool(SKIP_MARK.search(lines[i - 1]))
            blocks.append((i + 1, "\n".join(lines[i + 1 : end]), skipped))
        i = end + 1
    return blocks


def test_readme_has_runnable_python_blocks():
    blocks = code_blocks(README)
    assert any(not skipped for _, _, skipped in blocks), "README.md has no runnable block"


def test_readme_python_blocks_run(tmp_path, monkeypatch, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": "__readme__"}
    for line, code, skipped in code_blocks(README):
        if skipped:
            continue
        compiled = compile(code, f"README.md:{line}", "exec")
        exec(compiled, namespace)  # noqa: S102 - the README's own examples


def test_skip_mark_is_recognised(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "<!-- docs-test: skip (needs a GPU) -->\n```python\nraise SystemExit\n```\n"
        "```python\nx = 1\n```\n```bash\nls\n```\n"
    )
    assert code_blocks(page) == [(2, "raise SystemExit", True), (5, "x = 1", False)]


def test_import_coinrun_mg_does_not_import_torch():
    probe = (
        "import sys, coinrun_mg\n"
        "assert 'torch' not in sys.modules, 'import coinrun_mg imported torch'\n"
        "names = ('evaluate', 'train', 'PPOConfig', 'load_policy', 'run_sweep')\n"
        "assert set(names) <= set(dir(coinrun_mg))\n"
        "assert all(callable(getattr(coinrun_mg, n)) for n in names)\n"
        "assert 'torch' in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unknown_attribute_raises_attribute_error():
    import coinrun_mg

    with pytest.raises(AttributeError, match="no_such_name"):
        coinrun_mg.no_such_name  # noqa: B018


# --- links ------------------------------------------------------------------------------

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def without_code(text: str) -> str:
    """``text`` with fenced blocks and inline code removed (links there are not links)."""
    return re.sub(r"`[^`\n]*`", "", without_fences(text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]|<[^>]+>", "", heading.strip().lower())
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = without_fences(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for match in re.finditer(r"^#{1,6}\s+(.*?)\s*#*\s*$", text, flags=re.M):
        base = slug(match.group(1))
        name, n = base, 1
        while name in found:  # repeated headings get -1, -2, ...
            name, n = f"{base}-{n}", n + 1
        found.add(name)
    return found


def relative_links(path: Path) -> list[str]:
    targets = LINK.findall(without_code(path.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in relative_links(page):
        file_part, _, anchor = target.partition("#")
        dest = (page.parent / file_part).resolve() if file_part else page
        if not dest.exists():
            broken.append(f"{target} (no file {dest.relative_to(ROOT)})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_slugs_follow_github():
    assert slug("When something goes wrong") == "when-something-goes-wrong"
    assert slug("The `coinrun-mg` command: eval") == "the-coinrun-mg-command-eval"
    assert slug("Set-up, and the two commands") == "set-up-and-the-two-commands"
