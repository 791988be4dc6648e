"""Roles and what each may do."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"
    SUPERVISOR = "supervisor"
    INTEGRATOR = "integrator"  # read-only
    ADMIN = "admin"


class Permission(StrEnum):
    READ = "read"
    WRITE_INCIDENTS = "write_incidents"
    REOPEN_INCIDENTS = "reopen_incidents"
    MANAGE_AGENCIES = "manage_agencies"


ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.INTEGRATOR: frozenset({Permission.READ}),
    Role.OPERATOR: frozenset({Permission.READ, Permission.WRITE_INCIDENTS}),
    Role.SUPERVISOR: frozenset(
        {
            Permission.READ,
            Permission.WRITE_INCIDENTS,
            Permission.REOPEN_INCIDENTS,
            Permission.MANAGE_AGENCIES,
        }
    ),
    Role.ADMIN: frozenset(Permission),
}
