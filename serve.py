"""``streamlit run`` with the app's own navigation from the first session on.

Streamlit decides once per server process, when its first session starts, whether a
``pages/`` folder beside the main script is an old-style multipage app (every file a page
named after the file, each run without the main script), and drops that only when the main
script calls ``st.navigation``. A first session that opened a page's URL before any session
had run app.py (``sscmort app --no-demo`` starts no check session; under load the check
session can come second) got that listing: ``pages/_shared.py`` and the other helper modules
offered as pages, the chosen page run without app.py. app.py calls ``st.navigation`` on every
run, so ``sscmort app`` starts Streamlit through this file, which says so before the server
starts (tests/pages/test_browser.py opens a page's URL as the first session and checks the
navigation).

    python serve.py run app.py [streamlit options]
"""

from __future__ import annotations

import sys

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web.cli import main

if __name__ == "__main__":
    PagesManager.uses_pages_directory = False  # app.py navigates with st.navigation
    sys.exit(main(prog_name="streamlit"))
