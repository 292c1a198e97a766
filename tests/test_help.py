"""Each command's --help states every default exactly once."""

import argparse
import re

import pytest

from results import report
from tuning import check, run, train


def help_of(main, capsys):
    """What main(["--help"]) prints, and the parser it built (caught as it parses)."""
    parsers = []
    parse_args = argparse.ArgumentParser.parse_args

    def keep(self, *args, **kwargs):
        parsers.append(self)
        return parse_args(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch, pytest.raises(SystemExit) as exit_:
        patch.setattr(argparse.ArgumentParser, "parse_args", keep)
        main(["--help"])
    assert exit_.value.code == 0
    return capsys.readouterr().out, parsers[0]


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


@pytest.mark.parametrize("main", [
    pytest.param(run.main, id="tuning.run"),
    pytest.param(train.main, id="tuning.train"),
    pytest.param(check.main, id="tuning.check"),
    pytest.param(report.main, id="results.report"),
])
def test_help_states_every_default_once(main, capsys):
    """Every option with a default says it once, none says it twice, none says None or False."""
    text, parser = help_of(main, capsys)
    helps = entries(text)
    for action in parser._actions:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            continue
        said = helps[action.option_strings[0]]
        assert said.count("default") <= 1, said
        assert "(default: None)" not in said and "(default: False)" not in said, said
        if action.default is not None and action.default is not False and action.nargs != 0:
            assert said.count("default") == 1, said
