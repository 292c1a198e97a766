"""README.md: its shape, and its cheap commands (--help, --list-spaces) run as written; its
--smoke-test command: test_smoke_run.py."""

import re

import pytest
from conftest import ROOT, readme_commands, run_readme_command

from search_spaces import SPACES

README = (ROOT / "README.md").read_text()
QUICK = [c for c in readme_commands() if {"--help", "--list-spaces"} & set(c)]


def test_readme_opens_with_a_title_and_the_two_commands():
    """Line 1 is the title; the main job and the test command are in the first 25 lines; ~120 lines."""
    lines = README.splitlines()
    assert lines[0].startswith("# ")
    head = "\n".join(lines[:25])
    assert ".venv/bin/python -m tuning.run --space sgd_vs_adam" in head
    assert ".venv/bin/python -m pytest\n" in head
    assert len(lines) <= 120


def test_readme_links_only_to_docs_that_exist():
    """Every docs/ page and picture the README links to is in the repository."""
    links = re.findall(r"\]\((docs/[^)]+)\)", README)
    assert len(links) >= 7
    assert [link for link in links if not (ROOT / link.split("#")[0]).is_file()] == []


def test_readme_shows_the_cheap_commands():
    """The README shows --help and --list-spaces for tuning.run, so the test below runs them."""
    assert [c[-1] for c in QUICK] == ["--help", "--list-spaces"]


@pytest.mark.parametrize("command", QUICK, ids=[" ".join(c) for c in QUICK])
def test_readme_quick_command_runs(command, tmp_path):
    """--help prints the usage and --list-spaces every space, with exit code 0."""
    done = run_readme_command(command, tmp_path)
    assert done.returncode == 0, done.stderr
    if "--help" in command:
        assert done.stdout.startswith("usage: ")
    else:
        assert [line.split(":")[0] for line in done.stdout.splitlines()
                if not line.startswith(" ")] == list(SPACES)
