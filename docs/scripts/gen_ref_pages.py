"""Generate one API reference page per public module of every workspace package.

Run by the mkdocs ``gen-files`` plugin at build time: nothing is written to the repository.
A module is public when neither it nor any package above it starts with an underscore.
"""

from __future__ import annotations

from pathlib import Path

import mkdocs_gen_files

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bnn-core", "adv-attacks", "adv-channels", "robust-vi", "reactive", "advbayes-data")

nav = mkdocs_gen_files.Nav()
for folder in PACKAGES:
    src = ROOT / "packages" / folder / "src"
    for path in sorted(src.rglob("*.py")):
        parts = list(path.relative_to(src).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if any(part.startswith("_") for part in parts):
            continue
        doc_path = Path(*parts).with_suffix(".md")
        nav[tuple(parts)] = doc_path.as_posix()
        with mkdocs_gen_files.open(Path("reference", doc_path), "w") as fd:
            fd.write(f"# `{'.'.join(parts)}`\n\n::: {'.'.join(parts)}\n")
        mkdocs_gen_files.set_edit_path(Path("reference", doc_path), path.relative_to(ROOT))

with mkdocs_gen_files.open("reference/SUMMARY.md", "w") as nav_file:
    nav_file.writelines(nav.build_literate_nav())
