"""Install requirement files into the virtual environment that runs this script: with uv
when it can be had, else with pip (``ILMOCO_INSTALLER=pip`` asks for pip).

uv unpacks and byte-compiles in parallel: the pinned stack, most of it the 6 GB CUDA build
of torch, took 46 s with uv against 126 s with pip on a 2-core machine (measured). uv does
not read pip's configuration, so the package sources pip is configured with (its files and
``PIP_*`` variables, as ``pip config list`` shows them: indexes, find-links, constraints,
certificates, proxies) are passed to uv on its command line, and uv resolves across all
indexes at once, as pip does (``--index-strategy unsafe-best-match``). A pip setting with no
uv counterpart, or any failure of uv, falls back to pip with one line saying why.

    python envs/install.py -r requirements.txt [-r more.txt ...]
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

UV = "uv==0.13.9"
PIP = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check"]

# pip's list options (whitespace-separated values) -> the uv flag of each value
LIST_FLAGS = {"extra-index-url": "--extra-index-url", "find-links": "--find-links",
              "constraint": "--constraints", "trusted-host": "--allow-insecure-host"}
# pip's settings that become environment variables of uv
ENV_VARS = {"cert": ("SSL_CERT_FILE",), "proxy": ("HTTP_PROXY", "HTTPS_PROXY"),
            "timeout": ("UV_HTTP_TIMEOUT",), "default-timeout": ("UV_HTTP_TIMEOUT",)}
# pip's settings that change nothing about what gets installed
IGNORED = {"disable-pip-version-check", "no-color", "progress-bar", "quiet", "verbose",
           "no-cache-dir", "cache-dir", "retries", "root-user-action", "require-virtualenv",
           "no-input", "no-python-version-warning", "log", "no-compile", "compile"}
# the sections pip reads for `pip install`, weakest first; PIP_* variables override both
SECTIONS = ("global", "install", ":env:")


class Unsupported(ValueError):
    """A pip setting that uv cannot be told."""


def parse_pip_config(text: str) -> dict[str, str]:
    """``pip config list`` output -> the settings ``pip install`` uses (option -> value)."""
    found: dict[tuple[str, str], str] = {}
    for line in text.splitlines():
        m = re.fullmatch(r"(?P<section>[^=]*?)\.(?P<key>[^.=]+)=(?P<value>.*)", line.strip())
        if m:
            value = m["value"]
            try:
                value = str(ast.literal_eval(value))
            except (ValueError, SyntaxError):
                pass
            found[m["section"], m["key"]] = value
    settings: dict[str, str] = {}
    for section in SECTIONS:
        settings.update({k: v for (s, k), v in found.items() if s == section})
    return settings


def uv_options(settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """uv's command-line options and environment for pip's ``settings``; raises
    :class:`Unsupported` for a setting uv has no counterpart of."""
    args: list[str] = []
    env: dict[str, str] = {}
    for key, value in sorted(settings.items()):
        if key == "index-url":
            args += ["--index-url", value]
        elif key in LIST_FLAGS:
            for item in value.split():
                args += [LIST_FLAGS[key], item]
        elif key == "no-index":
            if value.strip().lower() in ("1", "true", "yes", "on"):
                args.append("--no-index")
        elif key in ENV_VARS:
            env.update(dict.fromkeys(ENV_VARS[key], value))
        elif key not in IGNORED:
            raise Unsupported(f"pip setting {key}={value!r} has no uv counterpart")
    return args, env


def uv_command(uv: str, requirements: list[str], settings: dict[str, str]):
    args, env = uv_options(settings)
    cmd = [uv, "pip", "install", "--python", sys.executable, "--compile-bytecode",
           "--index-strategy", "unsafe-best-match", "--quiet", *args, *requirements]
    return cmd, {**os.environ, **env}


def install_with_uv(requirements: list[str], run=subprocess.run) -> str | None:
    """Install with uv; returns None on success, else why not (pip then does it)."""
    listed = run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                 text=True)
    if listed.returncode != 0:
        return "pip config list failed"
    try:
        cmd, env = uv_command(str(Path(sys.executable).parent / "uv"), requirements,
                              parse_pip_config(listed.stdout))
    except Unsupported as e:
        return str(e)
    if run([*PIP, UV]).returncode != 0:
        return f"pip could not install {UV}"
    rc = run(cmd, env=env).returncode
    return None if rc == 0 else f"uv exited with {rc}"


def main(argv: list[str], run=subprocess.run) -> int:
    installer = os.environ.get("ILMOCO_INSTALLER", "uv")
    if installer not in ("uv", "pip"):
        print(f"ILMOCO_INSTALLER={installer!r}: use uv or pip", file=sys.stderr)
        return 2
    if installer == "uv":
        why = install_with_uv(argv, run)
        if why is None:
            return 0
        print(f"[install] {why}: installing with pip instead", file=sys.stderr, flush=True)
    return run([*PIP, *argv]).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
