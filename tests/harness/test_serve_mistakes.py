"""`cancel-harness serve` mistakes: one line on stderr, exit 2, and nothing bound."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--tls", "--tls-dir", "{file}"], "is a file; give a directory"),
        (["--tls", "--tls-dir", "{file}/sub"], "cannot make it"),
        (["--fault", "hang-after=" + "9" * 5000], "from 0 to 1,000,000"),
        (["--fault", "kind=antropic"], "did you mean 'anthropic'"),
        (["--fault", "pace=10ms;pace=20ms"], "'pace' is given twice"),
        (["--ledger-log", "{dir}"], "is a directory; give a file path"),
        (["--ledger-log", "{file}/x.jsonl"], "cannot write it"),
        (["--request-timeout", "0"], "--request-timeout 0: give seconds above 0"),
        (["--idle-timeout", "-1"], "--idle-timeout -1: give seconds above 0"),
    ],
)
def test_each_mistake_is_one_line_and_exit_2(
    argv: list[str], fragment: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("not a directory")
    args = [a.format(file=afile, dir=tmp_path) for a in argv]
    assert main(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("cancel-harness: error: ")
    assert fragment in err
    assert err.count("\n") == 1
    assert len(err) < 300
