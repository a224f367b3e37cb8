"""Who may do what: roles and the role file (:mod:`.roles`), identities of app sessions,
the local user and CLI users (:mod:`.identity`), deployment settings and the localhost-only
rule (:mod:`.settings`), typed paths inside allowed roots (:mod:`.paths`), and the access
decision of one app run (:mod:`.guard`). Pure policy: no Streamlit, no store; the page guard
in ``pages/_shared`` and the CLI call it, the audit trail records what it decides.

May import: errors and the standard library only.
"""

from __future__ import annotations

from sscmort_core.access.guard import Access, resolve_access  # noqa: F401
from sscmort_core.access.identity import (  # noqa: F401
    LOCAL_IDENTITY,
    LOCAL_USER,
    Identity,
    cli_identity,
    identity_from_claims,
    os_user,
)
from sscmort_core.access.paths import check_import_path  # noqa: F401
from sscmort_core.access.roles import (  # noqa: F401
    ACTION_ROLES,
    PAGE_ROLES,
    Role,
    RoleConfig,
    action_role,
    can,
    can_open,
    load_role_config,
    page_role,
    refusal,
)
from sscmort_core.access.settings import (  # noqa: F401
    Settings,
    UploadLimits,
    check_listen,
    check_upload_sizes,
    is_loopback,
    read_settings_file,
    settings_from_mapping,
)
