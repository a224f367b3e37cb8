"""CLI command ``app``: start the Streamlit app, secure by default.

On localhost (the default) it runs without login and every page says so. Asked to listen on
any other address it starts only when login is configured (OIDC ``[auth]`` and
``sscmort.roles_file`` in the secrets file, see :mod:`sscmort_core.access.settings`);
otherwise it exits with status 2 and one line naming the setting. It always serves with XSRF
and CORS protection on and static file serving off, whatever the environment says (flags
given to ``streamlit run`` win over ``STREAMLIT_*`` variables and config files), and hands
Streamlit exactly the secrets file it checked.

First start (issue 13): with no store file (or a store whose demo build is incomplete) the app
serves at once and builds the synthetic demo as a background job in its own process, the
store's only writer (``pipeline.demo_job``); ``--no-demo`` leaves a missing store missing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sscmort_core.access import check_listen, load_role_config, read_settings_file
from sscmort_core.cli.output import Command, add_store, int_at_least
from sscmort_core.errors import SettingsError

DEMO_ENV = "SSCMORT_DEMO_BUILD"  # "PATIENTS:SEED": the app builds / continues the demo
REPO = Path(__file__).resolve().parents[2]  # app.py and .streamlit/ live here (editable install)
FORCED_OPTIONS = (("server.enableXsrfProtection", "true"), ("server.enableCORS", "true"),
                  ("server.enableStaticServing", "false"), ("server.headless", "true"),
                  ("browser.gatherUsageStats", "false"))


def app_file() -> Path:
    return REPO / "app.py"


def serve_file() -> Path:
    """``streamlit run`` that tells Streamlit up front that app.py does its own navigation
    (see serve.py: otherwise a first session opening a page's URL lists ``pages/``' files)."""
    return REPO / "serve.py"


def streamlit_command(*, address: str, port: int, secrets: Path,
                      script_check: bool = False) -> list[str]:
    """The ``streamlit run`` command line (run with the app's folder as working directory);
    ``script_check`` turns on Streamlit's script health check (see :func:`kick`)."""
    cmd = [sys.executable, str(serve_file()), "run", str(app_file()),
           "--server.address", address, "--server.port", str(port),
           "--secrets.files", str(secrets)]
    if script_check:
        cmd += ["--server.scriptHealthCheckEnabled", "true"]
    for option, value in FORCED_OPTIONS:
        cmd += [f"--{option}", value]
    return cmd


def cmd_app(args: argparse.Namespace) -> None:
    secrets = Path(args.secrets or REPO / ".streamlit" / "secrets.toml").resolve()
    settings = read_settings_file(secrets)
    check_listen(args.address, settings)
    if settings.login_configured:
        assert settings.roles_file is not None
        load_role_config(settings.roles_file)  # a broken role file stops the start, not a page
    if not app_file().is_file() or not serve_file().is_file():
        raise SettingsError("app.py / serve.py are not beside this sscmort_core (install "
                            "the checkout with `pip install -e .`, as `make install` does)",
                            app_file())
    store = Path(args.store).resolve()
    cmd = streamlit_command(address=args.address, port=args.port, secrets=secrets,
                            script_check=not args.no_demo)
    mode = ("login required (OIDC), roles from " + str(settings.roles_file)
            if settings.login_configured else "no login: localhost only")
    env = dict(os.environ, SSCMORT_STORE=str(store))
    env.pop(DEMO_ENV, None)
    demo = "off (--no-demo)"
    if not args.no_demo:
        env[DEMO_ENV] = f"{args.demo_patients}:{args.demo_seed}"
        demo = ("built in the background on first start" if not store.exists() else
                "continued in the background if its build is incomplete")
    if args.dry_run:
        print(json.dumps({"command": cmd, "cwd": str(REPO), "store": str(store),
                          "mode": mode, "demo": demo}, indent=2))
        return
    print(f"sscmort app on http://{args.address}:{args.port} (store {store}; {mode}; "
          f"demo {demo})", file=sys.stderr)
    os.chdir(REPO)
    if not args.no_demo:
        host = "127.0.0.1" if args.address in ("0.0.0.0", "::") else args.address
        code = f"from sscmort_core.cli.app import kick; kick({f'http://{host}:{args.port}'!r})"
        subprocess.Popen([sys.executable, "-c", code], env=env,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    os.execve(cmd[0], cmd, env)


def kick(url: str, timeout_s: float = 120.0) -> None:
    """Run the app's script once as soon as its server answers, so that a demo build starts
    with the server rather than at the first page view (Streamlit runs app code only for a
    session; its script health check runs one). Without login a check session acts as
    "local", as every local session does; with login it is refused before the store opens,
    and the build starts with the first logged-in page. A helper process of ``sscmort app``;
    it gives up silently (the first page view then starts the build)."""
    import urllib.request  # only this helper process needs it (sscmort --help stays quick)

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2):
                break
        except OSError:
            time.sleep(0.25)
    else:
        return
    try:
        with urllib.request.urlopen(url + "/_stcore/script-health-check", timeout=90):
            pass
    except OSError:
        pass


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("app", help="start the dashboard (localhost without login; any other "
                                   "address only with login configured)")
    p.add_argument("--address", default="localhost",
                   help="address to listen on (default localhost; anything else needs login)")
    p.add_argument("--port", type=int_at_least(1), default=8501, help="port (default 8501)")
    add_store(p)
    p.add_argument("--secrets", type=Path, default=None,
                   help="settings file (default .streamlit/secrets.toml beside app.py)")
    p.add_argument("--no-demo", action="store_true",
                   help="never build the synthetic demo (by default a missing store gets one, "
                        "built in the background while the app serves)")
    p.add_argument("--demo-patients", type=int_at_least(1), default=600,
                   help="patients of a demo built on first start (600)")
    p.add_argument("--demo-seed", type=int, default=0, help="its seed (0)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the settings and print the command instead of starting")
    commands["app"] = cmd_app
