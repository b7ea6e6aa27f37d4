"""A keyring backend for the tests: ``keyring``'s own backend interface over a JSON file
(``$PIXI_PACK_CI_TEST_KEYRING``: service → user → password), chosen the way any backend is chosen:
``PYTHONPATH=tests/keyring_path PYTHON_KEYRING_BACKEND=pixi_pack_ci_test_keyring.FileKeyring``.
The machine's real keyring (Secret Service, Keychain, Credential Manager) is never touched."""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend


class FileKeyring(KeyringBackend):
    priority = 1  # type: ignore[assignment]

    def _data(self) -> dict[str, dict[str, str]]:
        path = Path(os.environ["PIXI_PACK_CI_TEST_KEYRING"])
        return json.loads(path.read_text()) if path.exists() else {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._data().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        raise NotImplementedError("the tests write the file themselves")

    def delete_password(self, service: str, username: str) -> None:
        raise NotImplementedError("the tests write the file themselves")
