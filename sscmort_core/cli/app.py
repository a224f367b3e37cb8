"""CLI command ``app``: start the Streamlit app, secure by default.

On localhost (the default) it runs without login and every page says so. Asked to listen on
any other address it starts only when login is configured (OIDC ``[auth]`` and
``sscmort.roles_file`` in the secrets file, see :mod:`sscmort_core.access.settings`);
otherwise it exits with status 2 and one line naming the setting. It always serves with XSRF
and CORS protection on and static file serving off, whatever the environment says (flags
given to ``streamlit run`` win over ``STREAMLIT_*`` variables and config files), and hands
Streamlit exactly the secrets file it checked.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from sscmort_core.access import check_listen, load_role_config, read_settings_file
from sscmort_core.cli.output import Command, add_store, int_at_least
from sscmort_core.errors import SettingsError

REPO = Path(__file__).resolve().parents[2]  # app.py and .streamlit/ live here (editable install)
FORCED_OPTIONS = (("server.enableXsrfProtection", "true"), ("server.enableCORS", "true"),
                  ("server.enableStaticServing", "false"), ("server.headless", "true"),
                  ("browser.gatherUsageStats", "false"))


def app_file() -> Path:
    return REPO / "app.py"


def streamlit_command(*, address: str, port: int, secrets: Path) -> list[str]:
    """The ``streamlit run`` command line (run with the app's folder as working directory)."""
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_file()),
           "--server.address", address, "--server.port", str(port),
           "--secrets.files", str(secrets)]
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
    if not app_file().is_file():
        raise SettingsError("app.py is not beside this sscmort_core (install the checkout "
                            "with `pip install -e .`, as `make install` does)", app_file())
    store = Path(args.store).resolve()
    cmd = streamlit_command(address=args.address, port=args.port, secrets=secrets)
    mode = ("login required (OIDC), roles from " + str(settings.roles_file)
            if settings.login_configured else "no login: localhost only")
    if args.dry_run:
        print(json.dumps({"command": cmd, "cwd": str(REPO), "store": str(store),
                          "mode": mode}, indent=2))
        return
    print(f"sscmort app on http://{args.address}:{args.port} (store {store}; {mode})",
          file=sys.stderr)
    os.chdir(REPO)
    os.execve(cmd[0], cmd, dict(os.environ, SSCMORT_STORE=str(store)))


def register(sub: Any, commands: dict[str, Command]) -> None:
    p = sub.add_parser("app", help="start the dashboard (localhost without login; any other "
                                   "address only with login configured)")
    p.add_argument("--address", default="localhost",
                   help="address to listen on (default localhost; anything else needs login)")
    p.add_argument("--port", type=int_at_least(1), default=8501, help="port (default 8501)")
    add_store(p)
    p.add_argument("--secrets", type=Path, default=None,
                   help="settings file (default .streamlit/secrets.toml beside app.py)")
    p.add_argument("--dry-run", action="store_true",
                   help="check the settings and print the command instead of starting")
    commands["app"] = cmd_app
