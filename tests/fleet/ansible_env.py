"""Real Ansible for the fleet tests: the collection in ``ansible/`` installed with
``ansible-galaxy collection install`` into a temporary collections path, and
``ansible-playbook`` run against an inventory of local "hosts"."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

COLLECTION_SRC = Path(__file__).resolve().parents[2] / "ansible"


@dataclass
class Ansible:
    home: Path
    collections: Path

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "ANSIBLE_HOME": str(self.home),
            "ANSIBLE_LOCAL_TEMP": str(self.home / "tmp"),
            "ANSIBLE_REMOTE_TEMP": str(self.home / "remote-tmp"),
            "ANSIBLE_COLLECTIONS_PATH": str(self.collections),
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
            "ANSIBLE_HOST_KEY_CHECKING": "0",
            "ANSIBLE_DEPRECATION_WARNINGS": "0",
            "ANSIBLE_FORKS": "5",
            "ANSIBLE_PIPELINING": "1",
            "ANSIBLE_CONFIG": str(self.home / "ansible.cfg"),  # none: ignore ./ansible.cfg
        }

    def playbook(
        self,
        name: str,
        inventory: Path,
        *extra: str,
        timeout: float = 400,
        **extra_vars: object,
    ) -> Run:
        """``ansible-playbook hotswap.fleet.<name> -i INVENTORY -e k=v ...``."""
        argv = [
            str(Path(sys.executable).with_name("ansible-playbook")),
            f"hotswap.fleet.{name}",
            "-i",
            str(inventory),
        ]
        for key, value in extra_vars.items():
            argv += ["-e", f"{key}={value}"]
        argv += list(extra)
        proc = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=self.env(),
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)

    def module(
        self, name: str, args: dict[str, object], inventory: Path, hosts: str = "all"
    ) -> Run:
        """``ansible HOSTS -m hotswap.fleet.<name> -a JSON`` with one-line JSON results."""
        argv = [
            str(Path(sys.executable).with_name("ansible")),
            hosts,
            "-i",
            str(inventory),
            "-m",
            f"hotswap.fleet.{name}",
            "-a",
            json.dumps(args),
            "-o",
        ]
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=120, check=False, env=self.env()
        )
        return Run(proc.returncode, proc.stdout, proc.stderr)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    def recap(self) -> dict[str, dict[str, int]]:
        """PLAY RECAP: host -> {ok, changed, unreachable, failed, skipped, rescued, ignored}."""
        out: dict[str, dict[str, int]] = {}
        recap = self.stdout.rsplit("PLAY RECAP", 1)[-1]
        for line in recap.splitlines():
            m = re.match(r"^(\S+)\s+:\s+(.*)$", line.strip())
            if m:
                out[m.group(1)] = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", m.group(2))}
        return out

    def results(self) -> dict[str, dict[str, Any]]:
        """``ansible -o`` lines (``host | STATE => {json}``): host -> its result."""
        out = {}
        for line in self.stdout.splitlines():
            m = re.match(r"^(\S+) \| (\w+)!? => (\{.*\})$", line)
            if m:
                out[m.group(1)] = {"state": m.group(2), **json.loads(m.group(3))}
        return out

    def __repr__(self) -> str:  # what an assertion shows: the end of the run's output
        return f"rc={self.rc}\n{self.stdout[-6000:]}\n{self.stderr[-3000:]}"


@pytest.fixture(scope="session")
def ansible(tmp_path_factory: pytest.TempPathFactory) -> Ansible:
    pytest.importorskip("ansible")
    home = tmp_path_factory.mktemp("ansible")
    (home / "tmp").mkdir()
    (home / "ansible.cfg").write_text("[defaults]\n")
    tool = Ansible(home, home / "collections")
    galaxy = str(Path(sys.executable).with_name("ansible-galaxy"))
    done = subprocess.run(
        [galaxy, "collection", "install", str(COLLECTION_SRC), "-p", str(tool.collections)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=tool.env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert (tool.collections / "ansible_collections/hotswap/fleet/MANIFEST.json").is_file()
    return tool
