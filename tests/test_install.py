"""envs/install.py: pip's package sources passed on to uv, and pip whenever uv cannot do
the install."""

import importlib.util
import subprocess
import sys

import pytest
from snakerun import ROOT

spec = importlib.util.spec_from_file_location("envs_install", ROOT / "envs" / "install.py")
install = importlib.util.module_from_spec(spec)
spec.loader.exec_module(install)

# `pip config list` as pip 23 prints it on a machine with a wheel folder, two local indexes
# and a constraints file in /etc/xdg/pip/pip.conf, and PIP_FIND_LINKS set
LISTED = """\
:env:.cert='/etc/ssl/certs/ca-certificates.crt'
:env:.default-timeout='180'
:env:.disable-pip-version-check='1'
:env:.find-links='/opt/wheels'
global.cert='/etc/ssl/certs/ca-certificates.crt'
global.constraint='/etc/xdg/pip/constraints.txt'
global.extra-index-url='file:///opt/pypi/simple file:///opt/pypi-more/simple'
global.find-links='/opt/wheels /srv/other'
"""


def test_pip_settings_become_uv_options():
    settings = install.parse_pip_config(LISTED)
    # PIP_FIND_LINKS replaces the file's find-links, as it does for pip
    assert settings["find-links"] == "/opt/wheels"
    args, env = install.uv_options(settings)
    assert args == ["--constraints", "/etc/xdg/pip/constraints.txt",
                    "--extra-index-url", "file:///opt/pypi/simple",
                    "--extra-index-url", "file:///opt/pypi-more/simple",
                    "--find-links", "/opt/wheels"]
    assert env == {"SSL_CERT_FILE": "/etc/ssl/certs/ca-certificates.crt",
                   "UV_HTTP_TIMEOUT": "180"}


def test_the_install_section_overrides_global_and_variables_override_both():
    settings = install.parse_pip_config(
        "global.index-url='https://a/simple'\ninstall.index-url='https://b/simple'\n"
        "global.no-index='false'\n")
    assert install.uv_options(settings)[0] == ["--index-url", "https://b/simple"]
    settings = install.parse_pip_config(
        "install.index-url='https://b/simple'\n:env:.index-url='https://c/simple'\n"
        ":env:.no-index='true'\n")
    assert install.uv_options(settings)[0] == ["--index-url", "https://c/simple",
                                               "--no-index"]


def test_a_setting_uv_cannot_be_told_is_refused():
    with pytest.raises(install.Unsupported, match=r"pip setting pre='1' has no uv"):
        install.uv_options(install.parse_pip_config("global.pre='1'\n"))


class FakeRun:
    """Records each command; ``fail`` lists the programs (argv[0] or 'pip install X')
    that exit 1."""

    def __init__(self, listed=LISTED, fail=()):
        self.calls, self.listed, self.fail = [], listed, fail

    def __call__(self, cmd, capture_output=False, text=False, env=None):
        self.calls.append((cmd, env))
        if cmd[-2:] == ["config", "list"]:
            return subprocess.CompletedProcess(cmd, 0, self.listed, "")
        failed = any(f in " ".join(cmd) for f in self.fail)
        return subprocess.CompletedProcess(cmd, 1 if failed else 0, "", "")


def test_uv_installs_with_pips_sources(monkeypatch):
    monkeypatch.delenv("ILMOCO_INSTALLER", raising=False)
    run = FakeRun()
    assert install.main(["-r", "requirements.txt"], run) == 0
    (config, _), (get_uv, _), (cmd, env) = run.calls
    assert get_uv[-1] == install.UV and get_uv[:3] == [sys.executable, "-m", "pip"]
    assert cmd[1:8] == ["pip", "install", "--python", sys.executable, "--compile-bytecode",
                        "--index-strategy", "unsafe-best-match"]
    assert cmd[-2:] == ["-r", "requirements.txt"] and "/etc/xdg/pip/constraints.txt" in cmd
    assert env["SSL_CERT_FILE"] == "/etc/ssl/certs/ca-certificates.crt"


@pytest.mark.parametrize("fail, listed, why", [
    (["uv pip install"], LISTED, "uv exited with 1"),
    ([install.UV], LISTED, f"pip could not install {install.UV}"),
    ([], "global.pre='1'\n", "pip setting pre='1' has no uv counterpart"),
])
def test_pip_takes_over_with_one_line_saying_why(monkeypatch, capsys, fail, listed, why):
    monkeypatch.delenv("ILMOCO_INSTALLER", raising=False)
    run = FakeRun(listed, fail)
    assert install.main(["-r", "requirements.txt"], run) == 0
    assert run.calls[-1][0] == [*install.PIP, "-r", "requirements.txt"]
    assert capsys.readouterr().err == f"[install] {why}: installing with pip instead\n"


def test_the_installer_can_be_chosen(monkeypatch, capsys):
    monkeypatch.setenv("ILMOCO_INSTALLER", "pip")
    run = FakeRun()
    assert install.main(["-r", "r.txt"], run) == 0
    assert [c for c, _ in run.calls] == [[*install.PIP, "-r", "r.txt"]]
    monkeypatch.setenv("ILMOCO_INSTALLER", "conda")
    assert install.main(["-r", "r.txt"], FakeRun()) == 2
    assert capsys.readouterr().err == "ILMOCO_INSTALLER='conda': use uv or pip\n"
