"""Reconciliation from Asterisk's CDR file: calls siaga112 missed get their row and incident
with caller ID and headers; re-reading changes nothing; half-written lines wait."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import async_sessionmaker

from siaga112.auth.roles import Role
from siaga112.calls.models import Call
from siaga112.incidents.models import Incident
from siaga112.locations.models import Location
from siaga112.metrics import Metrics
from siaga112.runtime.reconcile import CdrReconciler, record_start_of
from siaga112.telephony.cdr import read_new_records
from siaga112.telephony.contract import CDR_CSV_FIELDS
from tests.conftest import auth


def cdr_line(uniqueid: str, **values: str) -> str:
    row = {f: "" for f in CDR_CSV_FIELDS}
    row.update(
        uniqueid=uniqueid,
        linkedid=uniqueid,
        start="1795420800.120000",
        answer="1795420800.130000",
        end="1795420830.500000",
        disposition="ANSWERED",
        clid='"" <081234567890>',
        src="081234567890",
        dst="112",
        dcontext="from-carrier",
        channel="PJSIP/carrier-00000007",
        siaga112_dialled="112",
        siaga112_pres="allowed_not_screened",
        siaga112_pai="<sip:+6281234567890@carrier>",
        siaga112_pani="3GPP-E-UTRAN-FDD; utran-cell-id-3gpp=5101000A1B2C3D4E",
        siaga112_queue="emergency",
        siaga112_operator="PJSIP/6001",
    )
    row.update(values)
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(
        [row[f] for f in CDR_CSV_FIELDS]
    )
    return out.getvalue()


async def test_missed_calls_get_rows_once(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    answered, abandoned, operator_leg = (f"{i}.{uuid.uuid4().int % 10**6}" for i in range(3))
    path = tmp_path / "cdr.csv"
    path.write_text(
        # Asterisk writes one record per bridged segment: the operator's leg first, then the
        # hangup handler's record that names the queue member (as captured from Asterisk 22).
        cdr_line(answered, siaga112_operator="", dstchannel="PJSIP/6001-00000006")
        + cdr_line(
            answered,
            start="1795420830.400000",
            end="1795420830.600000",
            siaga112_enqueued="1795420800.200000",
            siaga112_answered="1795420806.750000",
        )
        + cdr_line(
            abandoned,
            src="",
            clid='"Anonymous" <anonymous>',
            siaga112_pres="prohib",
            siaga112_pai="",
            siaga112_operator="",
        )
        + cdr_line(operator_leg, dcontext="operators", siaga112_dialled="")
        + "not,a,cdr,line\n"
        + cdr_line("half-written")[:30]
    )
    reconciler = CdrReconciler(
        path=path, sessionmaker=sessionmaker, metrics=Metrics(), name=f"test-{uuid.uuid4()}"
    )
    assert await reconciler.run_once() == 2
    assert reconciler.metrics.counters["cdr_lines_rejected"] == 1
    async with sessionmaker() as session:
        rows = {
            c.uniqueid: c
            for c in (
                await session.scalars(
                    select(Call).where(Call.uniqueid.in_([answered, abandoned, operator_leg]))
                )
            ).all()
        }
    assert set(rows) == {answered, abandoned}
    a, b = rows[answered], rows[abandoned]
    assert (a.source, a.state, a.operator, a.outcome) == ("reconciled", "ended", "6001", "answered")
    assert a.pani_raw is not None
    assert a.pani_raw.endswith("5101000A1B2C3D4E")
    assert a.caller_number == "081234567890"
    assert a.ended_at is not None
    assert a.offered_at < a.ended_at
    assert a.ended_at.timestamp() == 1795420830.6
    assert a.enqueued_at is not None
    assert a.enqueued_at.timestamp() == 1795420800.2
    assert a.answered_at is not None
    assert a.answered_at.timestamp() == 1795420806.75
    assert b.answered_at is None
    assert (b.state, b.outcome, b.caller_id_available) == ("abandoned", "abandoned", False)
    assert a.incident_id is not None
    assert b.incident_id is not None
    # Nothing new: nothing changes. The half-written line is completed later and applied.
    assert await reconciler.run_once() == 0
    with path.open("a") as fh:
        fh.write(cdr_line("half-written")[30:])
    assert await reconciler.run_once() == 1
    async with sessionmaker() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(Incident)
            .where(Incident.origin_linkedid.in_([answered, abandoned, "half-written"]))
        )
    assert count == 3


async def test_missing_file_is_not_an_error(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    reconciler = CdrReconciler(
        path=tmp_path / "none.csv", sessionmaker=sessionmaker, metrics=Metrics()
    )
    assert await reconciler.run_once() == 0


# What Asterisk's res_geolocation made of a PIDF-LO body (CDR column siaga112_location).
EFFECTIVE_LOCATION = 'shape="Circle",crs="2d",pos="-6.28211 106.97432",radius="35"'


async def test_reconciled_call_gets_the_pidf_location_asterisk_resolved(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    located, plain = (f"loc{i}.{uuid.uuid4().int % 10**6}" for i in range(2))
    path = tmp_path / "cdr.csv"
    path.write_text(
        # Two segments of the located call: the location is on one of them only.
        cdr_line(located, siaga112_operator="", dstchannel="PJSIP/6001-00000006")
        + cdr_line(
            located,
            start="1795420830.400000",
            end="1795420830.600000",
            siaga112_geolocation="<cid:loc-1@carrier.invalid>",
            siaga112_location=EFFECTIVE_LOCATION,
        )
        + cdr_line(plain)
    )
    records = read_new_records(path.read_bytes())[0]
    assert {r.uniqueid: r.location for r in records} == {located: EFFECTIVE_LOCATION, plain: ""}

    reconciler = CdrReconciler(
        path=path, sessionmaker=sessionmaker, metrics=Metrics(), name=f"test-{uuid.uuid4()}"
    )
    assert await reconciler.run_once() == 2

    async def pidf_locations() -> dict[str, list[Location]]:
        async with sessionmaker() as session:
            calls = (
                await session.scalars(select(Call).where(Call.uniqueid.in_([located, plain])))
            ).all()
            out: dict[str, list[Location]] = {}
            for c in calls:
                out[c.uniqueid] = list(
                    await session.scalars(
                        select(Location).where(
                            Location.call_id == c.id, Location.source == "pidf_lo"
                        )
                    )
                )
                for loc in out[c.uniqueid]:
                    assert loc.incident_id == c.incident_id is not None
            return out

    found = await pidf_locations()
    assert found[plain] == []
    [loc] = found[located]
    assert (loc.lat, loc.lon, loc.radius_m) == (-6.28211, 106.97432, 35.0)
    assert loc.raw is not None
    assert loc.raw["effective_location"] == EFFECTIVE_LOCATION
    # Read again from the start (a lost cursor): nothing twice.
    again = CdrReconciler(
        path=path, sessionmaker=sessionmaker, metrics=Metrics(), name=f"test-{uuid.uuid4()}"
    )
    assert await again.run_once() == 0
    assert [x.id for x in (await pidf_locations())[located]] == [loc.id]


async def test_lines_written_before_the_time_columns_are_still_read(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    # A CDR file outlives an upgrade: its older lines end before siaga112_enqueued/answered.
    uid = f"7.{uuid.uuid4().int % 10**6}"
    older = next(csv.reader(io.StringIO(cdr_line(uid))))[:-2]
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="\n").writerow(older)
    path = tmp_path / "cdr.csv"
    path.write_text(out.getvalue() + "too,short\n")
    reconciler = CdrReconciler(
        path=path, sessionmaker=sessionmaker, metrics=Metrics(), name=f"test-{uuid.uuid4()}"
    )
    assert await reconciler.run_once() == 1
    assert reconciler.metrics.counters["cdr_lines_rejected"] == 1
    async with sessionmaker() as session:
        row = (await session.scalars(select(Call).where(Call.uniqueid == uid))).one()
    assert (row.state, row.operator, row.answered_at) == ("ended", "6001", None)


async def test_reconciled_call_answered_by_an_overflow_destination_names_it(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    uid = f"7.{uuid.uuid4().int % 10**6}"
    path = tmp_path / "cdr.csv"
    path.write_text(
        cdr_line(
            uid,
            siaga112_operator="",
            dstchannel="Local/+62215550112@siaga112-overflow-0000000a;1",
        )
        + cdr_line(uid, siaga112_operator="Local/+62215550112@siaga112-overflow/n")
    )
    reconciler = CdrReconciler(
        path=path, sessionmaker=sessionmaker, metrics=Metrics(), name=f"test-{uuid.uuid4()}"
    )
    assert await reconciler.run_once() == 1
    async with sessionmaker() as session:
        call = (await session.scalars(select(Call).where(Call.uniqueid == uid))).one()
    assert (call.operator, call.outcome) == ("overflow:+62215550112", "answered")


async def test_a_call_cut_inside_answer_is_recorded_and_goes_on_the_callback_worklist(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
    client: httpx.AsyncClient,
    keys: dict[Role, str],
) -> None:
    # An Asterisk restart cuts calls inside Answer(), before the dialplan set any siaga112
    # column: only Asterisk's own fields say who called which number.
    uid = f"cut.{uuid.uuid4().int % 10**6}"
    blank = {f: "" for f in CDR_CSV_FIELDS if f.startswith("siaga112_")}
    path = tmp_path / "cdr.csv"
    path.write_text(
        cdr_line(uid, **blank, src="081277766655", clid='"" <081277766655>', lastapp="Answer")
    )
    reconciler = CdrReconciler(path=path, sessionmaker=sessionmaker, metrics=Metrics())
    assert await reconciler.run_once() == 1
    async with sessionmaker() as session:
        call = (await session.scalars(select(Call).where(Call.uniqueid == uid))).one()
    assert call.caller_e164 == "+6281277766655"
    assert call.dialled_number == "112"
    assert call.incident_id is not None
    assert (call.state, call.outcome) == ("abandoned", "cut_before_queue")
    worklist = await client.get("/v1/callbacks", headers=auth(keys[Role.OPERATOR]))
    assert worklist.status_code == 200, worklist.text
    assert str(call.id) in {item["call_id"] for item in worklist.json()["items"]}


async def test_a_new_database_adopts_no_call_recorded_before_its_record_started(
    tmp_path: Path,
    sessionmaker: async_sessionmaker,  # type: ignore[type-arg]
) -> None:
    async with sessionmaker() as session:
        started = await record_start_of(session)
    # The migration that created this database wrote when its record starts.
    assert started is not None
    assert abs((datetime.now(UTC) - started).total_seconds()) < 24 * 3600
    before, after = f"old.{uuid.uuid4().int % 10**6}", f"new.{uuid.uuid4().int % 10**6}"
    ts = started.timestamp()
    path = tmp_path / "cdr.csv"
    path.write_text(
        cdr_line(
            before, start=f"{ts - 3600:.6f}", answer=f"{ts - 3599:.6f}", end=f"{ts - 3500:.6f}"
        )
        + cdr_line(after, start=f"{ts + 60:.6f}", answer=f"{ts + 61:.6f}", end=f"{ts + 90:.6f}")
    )
    metrics = Metrics()
    reconciler = CdrReconciler(
        path=path, sessionmaker=sessionmaker, metrics=metrics, not_before=started
    )
    assert await reconciler.run_once() == 1
    async with sessionmaker() as session:
        uniqueids = set(
            await session.scalars(select(Call.uniqueid).where(Call.uniqueid.in_([before, after])))
        )
    assert uniqueids == {after}
    assert "siaga112_cdr_records_before_record_start_total 1" in metrics.render()
