//! What the mocks render maps back to what the generator meant: generated canonical record ->
//! partner shape (provincial XML in UTF-8 and GBK, 12345 JSON) -> transform -> validation
//! equals the generated record validated. And each malformation is rejected for its reason.

use chrono::Utc;
use xfhub_mocks::generator::{Generator, MAX_VERSION};
use xfhub_mocks::render::{encode_record, hotline_json, provincial_xml, Malformation};
use xfhub_schemas::{validate_petition, validate_workorder, CodeTables};
use xfhub_transforms::provincial::{map_record, parse_response};
use xfhub_transforms::{hotline12345, provincial};

fn page(records: &[u8], gbk: bool) -> Vec<u8> {
    let head = format!(
        "<?xml version=\"1.0\" encoding=\"{}\"?><soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\" \
         xmlns:xf=\"urn:hunan:zwgx:xfxx:v1\"><soap:Body><xf:QueryChangedPetitionsResponse><xf:result>\
         <xf:code>0</xf:code><xf:nextCursor>1</xf:nextCursor><xf:hasMore>false</xf:hasMore><xf:records>",
        if gbk { "GBK" } else { "UTF-8" }
    );
    let mut doc = head.into_bytes();
    doc.extend_from_slice(records);
    doc.extend_from_slice(
        b"</xf:records></xf:result></xf:QueryChangedPetitionsResponse></soap:Body></soap:Envelope>",
    );
    doc
}

#[test]
fn provincial_records_round_trip_in_both_encodings() {
    let g = Generator::new(99);
    let tables = CodeTables::embedded();
    let map = provincial::embedded_map();
    for i in 0..1500u64 {
        let version = 1 + (i % u64::from(g.petition_max_version(i))) as u32;
        let gen = g.petition(i, version);
        let xml = provincial_xml(&gen, map, None);
        let gbk = i % 2 == 0;
        let doc = page(&encode_record(&xml, gbk, None), gbk);
        let parsed = parse_response(&doc).unwrap();
        let text = parsed.records[0].text.as_ref().unwrap();
        let mapped = map_record(text, map).unwrap_or_else(|e| panic!("{i}: {e:?}\n{xml}"));
        let want = validate_petition(gen.petition.clone(), tables, Utc::now()).unwrap();
        let got = validate_petition(mapped.petition, tables, Utc::now()).unwrap();
        assert_eq!(got, want, "petition {i} v{version}");
        assert_eq!(mapped.events, gen.events, "events of {i} v{version}");
    }
}

#[test]
fn workorders_round_trip() {
    let g = Generator::new(98);
    let tables = CodeTables::embedded();
    let map = hotline12345::embedded_map();
    for i in 0..1500u64 {
        let version = 1 + (i % u64::from(MAX_VERSION)) as u32;
        let w = g.workorder(i, version);
        let json = hotline_json(&w, map, "2024-01-01 00:00:01.000", None);
        let mapped = hotline12345::map_order(&json, map).unwrap_or_else(|e| panic!("{i}: {e:?}"));
        let want = validate_workorder(w, tables, Utc::now()).unwrap();
        assert_eq!(
            validate_workorder(mapped, tables, Utc::now()).unwrap(),
            want,
            "order {i}"
        );
    }
}

#[test]
fn each_malformation_is_rejected_for_its_reason() {
    let g = Generator::new(5);
    let tables = CodeTables::embedded();
    let pmap = provincial::embedded_map();
    let hmap = hotline12345::embedded_map();
    for i in 0..200u64 {
        let gen = g.petition(i, 2);
        for m in Malformation::ALL {
            for gbk in [false, true] {
                let xml = provincial_xml(&gen, pmap, Some(m));
                let doc = page(&encode_record(&xml, gbk, Some(m)), gbk);
                let rec = &parse_response(&doc).unwrap().records[0];
                let code = match &rec.text {
                    Err(e) => e.code.clone(),
                    Ok(text) => match map_record(text, pmap) {
                        Err(e) => e[0].code.clone(),
                        Ok(mapped) => validate_petition(mapped.petition, tables, Utc::now())
                            .expect_err(&format!("{i} {m:?} gbk={gbk} is rejected"))[0]
                            .code
                            .clone(),
                    },
                };
                let want = match m {
                    // No complainant, no identity number: a code is spoiled instead.
                    Malformation::BadIdChecksum if gen.petition.complainants.is_empty() => {
                        "unknown_code"
                    }
                    Malformation::BadIdChecksum => "id_number_checksum",
                    Malformation::UnknownCode => "unknown_code",
                    Malformation::BrokenXml => "xml_malformed",
                    Malformation::WrongEncoding => "encoding",
                };
                assert_eq!(code, want, "{i} {m:?} gbk={gbk}");
            }
        }
        let w = g.workorder(i, 3);
        for m in Malformation::ALL {
            let json = hotline_json(&w, hmap, "2024-01-01 00:00:01.000", Some(m));
            let code = match hotline12345::map_order(&json, hmap) {
                Err(e) => e[0].code.clone(),
                Ok(w) => validate_workorder(w, tables, Utc::now()).unwrap_err()[0]
                    .code
                    .clone(),
            };
            let want = match m {
                Malformation::BadIdChecksum => "phone_format",
                Malformation::UnknownCode => "unknown_code",
                Malformation::BrokenXml => "number_format",
                Malformation::WrongEncoding => "required",
            };
            assert_eq!(code, want, "order {i} {m:?}");
        }
    }
}
