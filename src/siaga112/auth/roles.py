"""Roles and what each may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    INTEGRATOR = "integrator"  # read-only
    ADMIN = "admin"
    # Bound to one agency (api_keys.agency_id): sees and updates only what was sent to it.
    AGENCY = "agency"


class Permission(StrEnum):
    READ = "read"
    WRITE_INCIDENTS = "write_incidents"
    REOPEN_INCIDENTS = "reopen_incidents"
    MANAGE_AGENCIES = "manage_agencies"
    # Create, disable and delete operators' SIP accounts.
    MANAGE_OPERATORS = "manage_operators"
    # Read and update the dispatches sent to the key's own agency (scoped by agency_id).
    AGENCY_DISPATCHES = "agency_dispatches"
    # Lift a prank/nuisance flag before it expires (anyone who writes incidents may set one).
    REVOKE_FLAGS = "revoke_flags"
    # Listen to (download) call recordings and put them on legal hold. Not operators: they
    # handle live calls; reviewing recorded ones (often victims of violence) is supervision.
    RECORDINGS = "recordings"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.INTEGRATOR: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.WRITE_INCIDENTS}),
    Role.SUPERVISOR: frozenset(
        {
            Permission.READ,
            Permission.WRITE_INCIDENTS,
            Permission.REOPEN_INCIDENTS,
            Permission.MANAGE_AGENCIES,
            Permission.MANAGE_OPERATORS,
            Permission.REVOKE_FLAGS,
            Permission.RECORDINGS,
        }
    ),
    Role.ADMIN: frozenset(Permission),
    # No READ: an agency key never lists incidents, calls or other agencies' dispatches.
    Role.AGENCY: frozenset({Permission.AGENCY_DISPATCHES}),
}
