"""Validates XML documents with lxml against the checked-in schemas in contracts/xsd.

Usage: xsd_check.py CONTRACTS_DIR DOCS_DIR
Each file in DOCS_DIR is validated by its name:
  ex-*.xml    against exchange.xsd (exchange package header, manifest, data, signature)
  soap-*.xml  a SOAP envelope: the element in its Body against xfhub.xsd
  *.xml       against xfhub.xsd
A file whose name starts with bad- must FAIL validation (so the check is known to bite).
Exits 0 when every file did what its name says.
"""

import os
import sys

from lxml import etree

SOAP = {"http://schemas.xmlsoap.org/soap/envelope/", "http://www.w3.org/2003/05/soap-envelope"}


def main():
    contracts, docs = sys.argv[1], sys.argv[2]
    xfhub = etree.XMLSchema(etree.parse(os.path.join(contracts, "xsd", "xfhub.xsd")))
    exchange = etree.XMLSchema(etree.parse(os.path.join(contracts, "xsd", "exchange.xsd")))
    failures = 0
    names = sorted(n for n in os.listdir(docs) if n.endswith(".xml"))
    assert names, "no documents to check"
    for name in names:
        base = name[4:] if name.startswith("bad-") else name
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        doc = etree.parse(os.path.join(docs, name), parser)
        schema = exchange if base.startswith("ex-") else xfhub
        if base.startswith("soap-"):
            env = doc.getroot()
            assert etree.QName(env).namespace in SOAP, f"{name}: not a SOAP envelope"
            body = [c for c in env if etree.QName(c).localname == "Body"][0]
            doc = etree.ElementTree(etree.fromstring(etree.tostring(body[0])))
        ok = schema.validate(doc)
        want = not name.startswith("bad-")
        if ok == want:
            print(f"ok   {name}: {'valid' if ok else 'invalid as expected: ' + str(schema.error_log.last_error)}")
        else:
            failures += 1
            print(f"FAIL {name}: valid={ok}, expected {want}: {schema.error_log}")
    print(f"{len(names)} documents, {failures} failures")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
