"""Activation scripts written by ``rattler.shell`` for the unpacked prefix."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from rattler.platform import Subdir
from rattler.shell import Shell

from .errors import UnpackError

#: Shell name → script extension, as pixi-unpack names them (py-rattler has no nushell).
SHELLS: dict[str, str] = {
    "bash": "sh",
    "zsh": "sh",
    "fish": "fish",
    "xonsh": "xsh",
    "powershell": "ps1",
    "cmd": "bat",
}
_RATTLER_SHELLS = {
    "bash": Shell.bash,
    "zsh": Shell.zsh,
    "fish": Shell.fish,
    "xonsh": Shell.xonsh,
    "powershell": Shell.powershell,
    "cmd": Shell.cmd_exe,
}


def default_shell() -> str:
    return "cmd" if os.name == "nt" else "bash"


def activation_script(prefix: Path, shell: str, platform: str) -> str:
    # The public ActivationVariables always captures this process's PATH and bakes it into the
    # script; the target machine's PATH must be kept instead, so no current path is passed.
    from rattler.rattler import PyActivationVariables, PyActivator

    variables = PyActivationVariables(None, None, "prepend")
    result = PyActivator.activate(prefix, variables, Subdir(platform)._inner, _RATTLER_SHELLS[shell])
    return str(result.script)


def write_activation_script(prefix: Path, target: Path, shell: str, platform: str) -> None:
    try:
        text = activation_script(prefix, shell, platform)
    except Exception as exc:
        raise UnpackError(f"could not create the {shell} activation script: {' '.join(str(exc).split())}") from None
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\r\n" if shell in ("cmd", "powershell") else "\n") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
