"""Each command's --help states every default exactly once."""

import argparse
import re

import pytest

from results import report
from tuning import check, run, train


def help_of(module, capsys):
    """What the command's --help prints, and the parser it builds."""
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out, module.build_parser()


def entries(text):
    """Each option's help in --help's text, by its first option string."""
    found, current = {}, None
    for line in text.splitlines():
        match = re.match(r"  (-[-\w]+)", line)
        if match:
            current = match.group(1)
            found[current] = line
        elif current and line.startswith("     "):
            found[current] += " " + line.strip()
        else:
            current = None
    return found


@pytest.mark.parametrize("module", [
    pytest.param(run, id="tuning.run"),
    pytest.param(train, id="tuning.train"),
    pytest.param(check, id="tuning.check"),
    pytest.param(report, id="results.report"),
])
def test_help_states_every_default_once(module, capsys):
    """Every option with a default says it once, none says it twice, none says None or False."""
    text, parser = help_of(module, capsys)
    helps = entries(text)
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        said = helps[action.option_strings[0]]
        assert said.count("default") <= 1, said
        assert "(default: None)" not in said and "(default: False)" not in said, said
        if action.default is not None and action.default is not False and action.nargs != 0:
            assert said.count("default") == 1, said
