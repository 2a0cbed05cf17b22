"""The Dockerfile, checked without a Docker engine: what it declares agrees with the
code (ports, CLI, config, environment, health check), its health check really
probes a running server, and its install steps work in a fresh virtualenv.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shlex
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from hlrsmpp import cli, config as config_mod
from conftest import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
CONFIG_IN_IMAGE = "/etc/hlrsmpp/hlrsmpp.yaml"


def instructions(path: Path = ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuations joined."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not current and (not stripped or stripped.startswith("#")):
            continue
        if current and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        keyword, _, args = current.partition(" ")
        out.append((keyword.upper(), args.strip()))
        current = ""
    assert not current, "the Dockerfile ends inside a continued line"
    return out


def values(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def env_of() -> dict[str, str]:
    """ENV a=b c=d ... (the key=value form)."""
    env = {}
    for args in values("ENV"):
        for item in shlex.split(args):
            key, sep, value = item.partition("=")
            assert sep, f"ENV {args!r}: use the key=value form"
            env[key] = value
    return env


def exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
    return argv


def test_base_image_is_slim_python_311():
    froms = values("FROM")
    assert froms == ["python:3.11-slim"]


def test_runs_as_a_non_root_user():
    users = values("USER")
    assert users, "no USER: the server would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), user
    runs = " ".join(values("RUN"))
    assert "useradd" in runs and ("--uid " + user in runs or user in runs.split()), \
        "the USER is not created in the image"
    # Nothing after the last USER switches back.
    last = max(i for i, (kw, _) in enumerate(instructions()) if kw == "USER")
    assert all(kw != "USER" for kw, _ in instructions()[last + 1:])


def test_exposes_the_default_ports():
    exposed = {int(p.split("/")[0]) for args in values("EXPOSE") for p in args.split()}
    assert exposed == {config_mod.DEFAULTS["smpp"]["port"], config_mod.DEFAULTS["http"]["port"]}


def test_cmd_is_hlrsmpp_serve_with_the_mounted_config():
    cmd = exec_form(values("CMD")[-1])
    assert not values("ENTRYPOINT")
    assert cmd[0] == "hlrsmpp"
    args = cli.build_parser().parse_args(cmd[1:])
    assert args.command == "serve" and args.func is cli.cmd_serve
    assert args.config == CONFIG_IN_IMAGE


def test_config_and_environment_in_the_image_load():
    """The demo config COPYed to /etc/hlrsmpp loads with the image's ENV: the
    HLRSMPP_* names exist in config.py, and storage lands on the declared volume."""
    env = env_of()
    known = set(config_mod._ENV) | {"HLRSMPP_REDIS_URL"}
    ours = {k: v for k, v in env.items() if k.startswith("HLRSMPP_")}
    assert set(ours) <= known, set(ours) - known
    copies = [args.split() for args in values("COPY")]
    assert ["conf", "/etc/hlrsmpp"] in copies
    cfg = config_mod.load(ROOT / "conf" / "hlrsmpp.yaml", environ=ours)
    volumes = [v for args in values("VOLUME") for v in (json.loads(args) if args.startswith("[") else args.split())]
    assert cfg["storage"]["path"] in volumes
    # The demo config keeps to loopback; a container must listen on its own interface.
    assert cfg["smpp"]["host"] == cfg["http"]["host"] == "0.0.0.0"
    assert cfg["log"]["format"] == "json"
    assert cfg["accounts"], "the demo config has accounts"


def test_installs_with_the_pinned_constraints():
    pips = [r for r in values("RUN") if "pip install" in r]
    assert pips and all("-c constraints.txt" in r for r in pips)
    assert "constraints.txt" in " ".join(values("COPY"))


def test_healthcheck_targets_healthz_with_python_only():
    hc = values("HEALTHCHECK")
    assert len(hc) == 1
    opts, _, cmd = hc[0].partition("CMD ")
    argv = exec_form(cmd)
    assert argv[0] == "python" and "urllib" in argv[-1] and "/healthz" in argv[-1]
    assert "curl" not in hc[0] and "wget" not in hc[0]
    assert "--timeout=" in opts and "--interval=" in opts


@pytest.mark.e2e
@pytest.mark.slow
def test_healthcheck_probes_a_running_server(tmp_path):
    """Run the HEALTHCHECK command itself: 0 against a live server, non-zero once it is gone."""
    argv = exec_form(values("HEALTHCHECK")[0].partition("CMD ")[2])
    argv[0] = sys.executable
    cfg = tmp_path / "hlrsmpp.yaml"
    cfg.write_text("storage: {path: ./data}\naccounts:\n  - {system_id: demo, password: demo}\n")
    smpp_port, http_port = free_port(), free_port()
    env = dict(os.environ, HLRSMPP_HTTP_PORT=str(http_port))
    proc = ServerProcess(cfg, smpp_port, http_port).start()
    try:
        probe = None
        for _ in range(50):   # HTTP comes up just after SMPP
            probe = subprocess.run(argv, env=env, capture_output=True, timeout=30)
            if probe.returncode == 0:
                break
            __import__("time").sleep(0.1)
        assert probe.returncode == 0, probe.stderr.decode()
    finally:
        proc.terminate()
    probe = subprocess.run(argv, env=env, capture_output=True, timeout=30)
    assert probe.returncode != 0


def test_dockerignore_keeps_what_the_build_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for needed in ("pyproject.toml", "constraints.txt", "README.md", "setup.py", "hlrsmpp", "conf"):
        assert (ROOT / needed).exists(), needed
        assert not any(fnmatch.fnmatch(needed, pat) for pat in ignored), needed
    for heavy in (".git", ".venv", "data"):
        assert heavy in ignored


def _context(dest: Path) -> Path:
    """The build context as Docker would send it (.dockerignore applied, roughly)."""
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]

    def ignore(directory, names):
        # Docker's rules: a pattern matches the path from the context root; only
        # `**/` makes it match at any depth (so `data` is ./data, not hlrsmpp/hlr/data).
        rel = Path(directory).relative_to(ROOT)
        return {n for n in names for pat in ignored
                if fnmatch.fnmatch(str(rel / n), pat)
                or (pat.startswith("**/") and fnmatch.fnmatch(n, pat.removeprefix("**/")))}

    shutil.copytree(ROOT, dest, ignore=ignore)
    return dest


@pytest.mark.skipif(os.environ.get("HLRSMPP_SKIP_INSTALL_TEST") == "1", reason="HLRSMPP_SKIP_INSTALL_TEST=1")
@pytest.mark.timeout(600)
@pytest.mark.e2e
@pytest.mark.slow
def test_install_steps_in_a_fresh_venv(tmp_path):
    """The Dockerfile's RUN pip steps, in order, in a new virtualenv standing in for the
    image's Python, from a copy of the build context; then the CMD's program starts."""
    ctx = _context(tmp_path / "opt")
    assert not (ctx / ".venv").exists() and not (ctx / "tests").exists()
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    bindir = env_dir / "bin"
    env = dict(os.environ, PATH=f"{bindir}{os.pathsep}{os.environ['PATH']}", PIP_DISABLE_PIP_VERSION_CHECK="1")
    env.pop("VIRTUAL_ENV", None)
    env.pop("PYTHONPATH", None)
    # The context copy is the WORKDIR; each pip RUN is replayed there.
    for run in values("RUN"):
        if "pip " not in run:
            continue   # users and directories of the image: not for this machine
        if "touch hlrsmpp/__init__.py" in run:
            # The dependency layer works on a stub package in an empty directory.
            stage = tmp_path / "deps"
            stage.mkdir()
            for name in ("pyproject.toml", "constraints.txt", "README.md"):
                shutil.copy(ctx / name, stage / name)
            cwd = stage
        else:
            cwd = ctx
        # The image's compiler comes from apt-get (and goes with its lists); this
        # machine's own stands in for it, and its apt state is none of the test's business.
        run = " && ".join(step for step in run.split(" && ") if "apt" not in step)
        r = subprocess.run(["sh", "-ec", run], cwd=cwd, env=env, capture_output=True, timeout=540)
        assert r.returncode == 0, f"RUN {run}\n{r.stdout.decode()[-3000:]}\n{r.stderr.decode()[-3000:]}"
    # Installed at the pinned versions.
    pins = dict(line.split("==") for line in (ROOT / "constraints.txt").read_text().split()
                if "==" in line)
    out = subprocess.run([str(bindir / "python"), "-m", "pip", "list", "--format=json"], env=env,
                         capture_output=True, check=True).stdout
    have = {p["name"].lower().replace("_", "-"): p["version"] for p in json.loads(out)}
    for name in ("structlog", "prometheus-client", "aiohttp", "phonenumbers", "pyyaml", "redis", "asyncpg"):
        want = {k.lower().replace("_", "-"): v for k, v in pins.items()}[name]
        assert have[name] == want, (name, have[name], want)
    # The CMD's program runs from the venv, with the HLR tables found beside the package.
    r = subprocess.run([str(bindir / "python"), "-c",
                        "from hlrsmpp.hlr import Resolver; from pathlib import Path; "
                        "r = Resolver.from_config({}, Path('.')); "
                        "print(r.parse('447400123456', 1, 1) is not None)"],
                       cwd=tmp_path, env=env, capture_output=True, timeout=120)
    assert r.stdout.decode().strip() == "True", r.stderr.decode()[-2000:]
    r = subprocess.run([str(bindir / "hlrsmpp"), "serve", "--help"], env=env, capture_output=True, timeout=60)
    assert r.returncode == 0 and b"--config" in r.stdout
