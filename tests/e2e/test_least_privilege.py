"""Least privilege on the real stack: siaga112 serves as a database role that is no superuser,
Asterisk reads its realtime operators as a role that may read only the PJSIP tables, and the AMI
account siaga112 renders cannot run CLI commands, load modules, read configuration or run
programs (manager.conf)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from siaga112.telephony.ami_call_control import AmiCallControl
from tests.conftest import asterisk_role
from tests.e2e.conftest import Stack


async def test_the_service_serves_as_a_role_that_is_no_superuser(stack: Stack) -> None:
    async with stack.sessionmaker() as session:
        row = (
            await session.execute(
                text(
                    "SELECT current_user AS name, rolsuper, rolcreaterole, rolcreatedb "
                    "FROM pg_roles WHERE rolname = current_user"
                )
            )
        ).one()
    assert row.name.endswith("_app")
    assert (row.rolsuper, row.rolcreaterole, row.rolcreatedb) == (False, False, False)


async def test_asterisk_reads_the_operators_as_its_read_only_role(stack: Stack) -> None:
    # res_config_pgsql keeps one connection (res_pgsql.conf dbappname) from its load on.
    async with stack.sessionmaker() as session:
        users = (
            await session.scalars(
                text(
                    "SELECT usename FROM pg_stat_activity WHERE application_name = "
                    "'asterisk-realtime' AND datname = current_database()"
                )
            )
        ).all()
    assert users
    assert set(users) == {asterisk_role(stack.settings.database_url_str)}


@pytest.mark.parametrize(
    "action",
    [
        {"Action": "Command", "Command": "core show version"},
        {"Action": "ModuleLoad", "Module": "app_system.so", "LoadType": "load"},
        {"Action": "Reload", "Module": "res_pjsip.so"},
        {"Action": "GetConfig", "Filename": "manager.conf"},
        {"Action": "DBPut", "Family": "siaga112", "Key": "k", "Val": "v"},
        {
            "Action": "Originate",
            "Channel": "Local/answer@siaga112-reload/n",
            "Application": "System",
            "Data": "touch /tmp/siaga112-ami-intruder",
        },
        {
            "Action": "Originate",
            "Channel": "Local/answer@siaga112-reload/n",
            "Application": "Reload",
            "Data": "res_pjsip",
        },
    ],
    ids=[
        "Command",
        "ModuleLoad",
        "Reload",
        "GetConfig",
        "DBPut",
        "Originate-System",
        "Originate-Reload",
    ],
)
async def test_the_ami_account_is_refused_what_it_does_not_need(
    stack: Stack, action: dict[str, str]
) -> None:
    assert stack.telephony is not None
    reply = await stack.telephony.ami.send_action(action)
    assert reply.get("Response") == "Error", reply
    assert "denied" in reply.get("Message", "") or "Forbidden" in reply.get("Message", ""), reply


async def test_the_pjsip_reload_runs_with_the_originate_class_alone(stack: Stack) -> None:
    assert stack.telephony is not None
    control = stack.telephony.control
    assert isinstance(control, AmiCallControl)
    await control.reload_sip_accounts()
