"""``pixi-pack-ci completion --shell SHELL``: argcomplete's scripts, completing from the real parser.

bash is run for real: the script is loaded, and the function it registers with ``complete`` is
called the way bash's programmable completion calls it (``COMP_LINE``, ``COMP_WORDS``...), so the
completions come from the installed ``pixi-pack-ci`` itself. zsh, fish and PowerShell are not
installed here: their scripts are only checked to register the command.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from harness import assert_clean_error, run_cli

BIN = Path(sys.executable).parent
BASH = r"""
set -u
eval "$(pixi-pack-ci completion --shell bash)"
fn=$(complete -p pixi-pack-ci | sed -E 's/.* -F ([^ ]+) .*/\1/')
for line in "$@"; do
  COMP_LINE="$line"; COMP_POINT=${#COMP_LINE}; read -ra COMP_WORDS <<<"$COMP_LINE"
  [[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMP_TYPE=9; COMPREPLY=()
  "$fn" pixi-pack-ci "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
  echo "$line => $(printf '%s|' "${COMPREPLY[@]}")"
done
"""


@pytest.mark.posix
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_bash_completes_from_the_real_parser(tmp_path: Path) -> None:
    assert (BIN / "pixi-pack-ci").is_file(), "pixi-pack-ci is not installed in this venv"
    lines = ["pixi-pack-ci pack --pl", "pixi-pack-ci comp", "pixi-pack-ci pack --att",
             "pixi-pack-ci completion --shell p", "pixi-pack-ci unpack -s fi"]  # fmt: skip
    proc = subprocess.run(["bash", "-c", BASH, "bash", *lines], capture_output=True, text=True, timeout=120,
                          env={"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(tmp_path)})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = dict(line.split(" => ") for line in proc.stdout.splitlines())
    assert got["pixi-pack-ci pack --pl"] == "--platform |"
    assert got["pixi-pack-ci comp"] == "completion |"
    assert got["pixi-pack-ci pack --att"] == "--attest |"  # a plugin's flag: the parser, not a copy
    assert got["pixi-pack-ci completion --shell p"] == "powershell |"
    assert got["pixi-pack-ci unpack -s fi"] == "fish |"


def test_every_shell_gets_a_script() -> None:
    markers = {"bash": "complete ", "zsh": "#compdef pixi-pack-ci", "fish": "complete --command pixi-pack-ci",
               "powershell": "Register-ArgumentCompleter -Native -CommandName pixi-pack-ci"}  # fmt: skip
    for shell, marker in markers.items():
        proc = run_cli("completion", "--shell", shell, check=True)
        assert marker in proc.stdout.decode(), shell
    line = assert_clean_error(run_cli("completion", "--shell", "tcsh"), code=2)
    assert "invalid choice: 'tcsh'" in line
