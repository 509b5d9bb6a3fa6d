"""A real SOAP client against a running hub: Python zeep loads the WSDL from the hub and calls
every operation of PetitionService, over SOAP 1.1 and 1.2, including calls that fail validation,
signing and scopes. Requests are signed with HMAC-SM3 like REST requests (security/README.md).

Usage: zeep_check.py INPUT.json   (written by hub/tests/soap.rs: base URL, clients, samples)
Exits 0 when every check passed; prints one line per check.
"""

import hashlib
import hmac
import json
import sys
import time
import urllib.parse
import uuid

import requests
from zeep import Client
from zeep.exceptions import Fault
from zeep.transports import Transport

NS = "urn:xfhub:v1"


class Sign(requests.auth.AuthBase):
    """x-app-key, x-timestamp, x-nonce, x-signature over METHOD, path, sorted query,
    timestamp, nonce and the SM3 digest of the body."""

    def __init__(self, app_key, secret):
        self.app_key = app_key
        self.secret = secret.encode()

    def __call__(self, r):
        body = r.body or b""
        if isinstance(body, str):
            body = body.encode()
        url = urllib.parse.urlsplit(r.url)
        pairs = sorted(
            (p.split("=", 1)[0], p.split("=", 1)[1] if "=" in p else "", p)
            for p in url.query.split("&")
            if p
        )
        query = "&".join(p[2] for p in pairs)
        ts = str(int(time.time() * 1000))
        nonce = uuid.uuid4().hex
        digest = hashlib.new("sm3", body).hexdigest()
        sts = "\n".join([r.method.upper(), url.path, query, ts, nonce, digest])
        sig = hmac.new(self.secret, sts.encode(), "sm3").hexdigest()
        r.headers.update(
            {"x-app-key": self.app_key, "x-timestamp": ts, "x-nonce": nonce, "x-signature": sig}
        )
        return r


def client_for(base, auth):
    session = requests.Session()
    # The WSDL and its schemas are public; only calls are signed.
    session.auth = auth
    return Client(f"{base}/ws/PetitionService?wsdl", transport=Transport(session=session))


def fault_error(f):
    """The xf:error detail of a fault: (code, [(path, code)])."""
    detail = f.detail
    assert detail is not None, f"fault without detail: {f.message}"
    err = detail.find(f"{{{NS}}}error")
    assert err is not None, "detail holds no xf:error"
    code = err.findtext(f"{{{NS}}}code")
    fields = [
        (x.findtext(f"{{{NS}}}path"), x.findtext(f"{{{NS}}}code"))
        for x in err.findall(f"{{{NS}}}fields")
    ]
    for x in err.findall(f"{{{NS}}}fields"):
        assert x.findtext(f"{{{NS}}}message_zh"), "every field error has a Chinese message"
    return code, fields


def expect_fault(what, call, code, fault_code=None):
    try:
        call()
    except Fault as f:
        got, fields = fault_error(f)
        assert got == code, f"{what}: fault code {got}, want {code}"
        if fault_code is not None:
            assert fault_code in (f.code or ""), f"{what}: faultcode {f.code}, want {fault_code}"
        print(f"ok   {what}: fault {got} {fields}")
        return fields
    raise AssertionError(f"{what}: no fault")


def main():
    cfg = json.load(open(sys.argv[1], encoding="utf-8"))
    base = cfg["base"]
    full = client_for(base, Sign(cfg["full"]["app_key"], cfg["full"]["secret"]))
    svc = full.service
    svc12 = full.bind("PetitionService", "PetitionServiceSoap12")

    # SubmitPetition, idempotent like POST /api/v1/petitions.
    receipt = svc.SubmitPetition(petition=cfg["petition"])
    assert receipt.status == "created", receipt
    again = svc.SubmitPetition(petition=cfg["petition"])
    assert again.id == receipt.id and again.message_id == receipt.message_id, again
    print(f"ok   SubmitPetition: {receipt.id} (repeat answers the first receipt)")
    via12 = svc12.SubmitPetition(petition=cfg["petition2"])
    assert via12.status == "created", via12
    print("ok   SubmitPetition over SOAP 1.2")

    # GetPetition: the stored canonical record, personal numbers readable with pii:read.
    record = svc.GetPetition(id=receipt.id)
    assert str(record.id) == str(receipt.id)
    assert record.data.appeal.division == cfg["petition"]["appeal"]["division"]
    assert record.data.appeal.summary == cfg["petition"]["appeal"]["summary"]
    want_mobile = cfg["petition"]["complainants"][0].get("mobile")
    if want_mobile:
        assert record.data.complainants[0].mobile == cfg["expected_mobile"], record.data.complainants[0]
    print(f"ok   GetPetition: status {record.status}")

    # QueryPetitions with a filter and paging.
    page = svc.QueryPetitions(division=cfg["petition"]["appeal"]["division"], limit=1)
    assert len(page["items"]) == 1, page
    print(f"ok   QueryPetitions: {len(page['items'])} item, next cursor {bool(page['next_cursor'])}")
    everything = svc.QueryPetitions(limit=500)
    ids = {str(i.id) for i in everything["items"]}
    assert str(receipt.id) in ids and str(via12.id) in ids, ids

    # WriteBackHandling: a process event, the petition's handling updated.
    result = {
        "petition_id": receipt.id,
        "result": "accepted",
        "unit": "芙蓉区住房和城乡建设局",
        "text": "已受理，正在核查",
        "occurred_at": cfg["writeback_time"],
    }
    wb = svc.WriteBackHandling(handling_result=result)
    assert wb.duplicate is False and wb.status == "accepted", wb
    assert wb.process_event.kind == "accepted", wb
    again = svc.WriteBackHandling(handling_result=result)
    assert again.duplicate is True and again.event_seq == wb.event_seq, again
    after = svc.GetPetition(id=receipt.id)
    assert after.status == "accepted" and after.data.handling.responsible_unit == result["unit"]
    print(f"ok   WriteBackHandling: event {wb.event_seq}, repeat recognised")
    bad_transfer = dict(result, result="transferred")
    fields = expect_fault(
        "WriteBackHandling transfer without target",
        lambda: svc.WriteBackHandling(handling_result=bad_transfer),
        "validation_failed",
        "Client",
    )
    assert ("handling_result.target_org", "required") in fields, fields

    # SubmitWorkOrder.
    wo = svc.SubmitWorkOrder(workorder=cfg["workorder"])
    assert wo.kind == "workorder" and wo.status == "created", wo
    print(f"ok   SubmitWorkOrder: {wo.id}")

    # GetCodeTable over both versions.
    table = svc.GetCodeTable(name="forms")
    assert table.name == "forms" and any(e.code == "0001" for e in table.entries), table
    table12 = svc12.GetCodeTable(name="divisions")
    assert any(e.code == "430102" for e in table12.entries)
    print(f"ok   GetCodeTable: forms has {len(table.entries)} entries")
    expect_fault("GetCodeTable unknown", lambda: svc.GetCodeTable(name="nope"), "unknown_code_table", "Client")

    # Validation faults carry the REST codes and every field.
    fields = expect_fault(
        "SubmitPetition invalid (SOAP 1.1)",
        lambda: svc.SubmitPetition(petition=cfg["invalid_petition"]),
        "validation_failed",
        "Client",
    )
    assert sorted(fields) == sorted(tuple(x) for x in cfg["invalid_fields"]), fields
    expect_fault(
        "SubmitPetition invalid (SOAP 1.2)",
        lambda: svc12.SubmitPetition(petition=cfg["invalid_petition"]),
        "validation_failed",
        "Sender",
    )
    conflict = json.loads(json.dumps(cfg["petition"]))
    conflict["appeal"]["summary"] += "（改）"
    expect_fault("SubmitPetition same version, other content", lambda: svc.SubmitPetition(petition=conflict), "version_conflict")
    expect_fault("GetPetition unknown id", lambda: svc.GetPetition(id=str(uuid.uuid4())), "not_found")

    # Signing and scopes.
    unsigned = client_for(base, None).service
    expect_fault("unsigned call", lambda: unsigned.GetCodeTable(name="forms"), "auth_missing", "Client")
    forged = client_for(base, Sign(cfg["full"]["app_key"], "not-the-secret")).service
    expect_fault("wrong secret", lambda: forged.GetCodeTable(name="forms"), "auth_bad_signature", "Client")
    reader = client_for(base, Sign(cfg["reader"]["app_key"], cfg["reader"]["secret"])).service
    got = reader.GetPetition(id=receipt.id)
    assert got.data.complainants[0].mobile != cfg["expected_mobile"], "masked without pii:read"
    expect_fault(
        "WriteBackHandling without write_back",
        lambda: reader.WriteBackHandling(handling_result=dict(result, result="replied")),
        "auth_scope_denied",
    )
    print("all checks passed")


if __name__ == "__main__":
    main()
