"""Excel files for hub/tests/excel.rs, written and read by other tools than the hub's own.

    excel_tool.py make SPEC.json   writes a workbook described by SPEC (openpyxl; xlwt for .xls;
                                   msoffcrypto-tool for a password; zipfile for a zip bomb)
    excel_tool.py read FILE        prints the workbook as JSON (openpyxl): sheets, visibility,
                                   merged ranges, data validations, every row's values as text
    excel_tool.py fix SPEC.json    edits cells of an existing workbook (an error report) in place

SPEC: {"out": path, "format": "xlsx"|"xls"|"zipbomb"|"text", "sheet": name,
       "rows": [[cell, ...], ...], "title": text above the header merged across it,
       "group_header": [[first_col, last_col, text], ...] a header row above the header whose
       cells are merged (and header cells listed in "merge_down" merged over both rows),
       "hidden_rows": [sheet row numbers], "trailing_empty": n styled empty rows,
       "inline_strings": true to rewrite shared strings as inline strings,
       "password": text to encrypt, "extra_sheets": [names], "bomb_mb": n}
A cell is a string, a number, null, {"date": "YYYY-MM-DD"} or {"datetime": "YYYY-MM-DD HH:MM:SS"}.
"""

import datetime
import io
import json
import re
import sys
import zipfile


def cell_value(v):
    if isinstance(v, dict):
        if "date" in v:
            return datetime.date.fromisoformat(v["date"])
        if "datetime" in v:
            return datetime.datetime.fromisoformat(v["datetime"])
    return v


def make_xlsx(spec):
    import openpyxl
    from openpyxl.styles import Border, Side

    wb = openpyxl.Workbook()
    ws = wb.active
    ws.title = spec.get("sheet", "Sheet1")
    for name in spec.get("extra_sheets", []):
        wb.create_sheet(name)
    rows = spec["rows"]
    width = max(len(r) for r in rows)
    r0 = 1
    if "title" in spec:
        ws.cell(row=1, column=1, value=spec["title"])
        ws.merge_cells(start_row=1, start_column=1, end_row=1, end_column=width)
        r0 = 2
    if "group_header" in spec:
        for first, last, text in spec["group_header"]:
            ws.cell(row=r0, column=first, value=text)
            if last > first:
                ws.merge_cells(start_row=r0, start_column=first, end_row=r0, end_column=last)
        header = rows[0]
        for col in spec.get("merge_down", []):
            ws.cell(row=r0, column=col, value=header[col - 1])
            ws.merge_cells(start_row=r0, start_column=col, end_row=r0 + 1, end_column=col)
        r0 += 1
    for i, row in enumerate(rows):
        for j, v in enumerate(row):
            if i == 0 and "group_header" in spec and (j + 1) in spec.get("merge_down", []):
                continue  # the merged cell above holds it
            c = ws.cell(row=r0 + i, column=j + 1, value=cell_value(v))
            if isinstance(v, dict) and "date" in v:
                c.number_format = "yyyy-mm-dd"
    for r in spec.get("hidden_rows", []):
        ws.row_dimensions[r].hidden = True
    thin = Side(style="thin")
    last = r0 + len(rows)
    for k in range(spec.get("trailing_empty", 0)):
        for j in range(width):
            ws.cell(row=last + k, column=j + 1).border = Border(top=thin, bottom=thin)
    buf = io.BytesIO()
    wb.save(buf)
    data = buf.getvalue()
    if spec.get("inline_strings"):
        data = to_inline_strings(data)
    return data


def to_inline_strings(data):
    """Rewrites every shared-string cell of the sheets as an inline string."""
    src = zipfile.ZipFile(io.BytesIO(data))
    shared = []
    if "xl/sharedStrings.xml" in src.namelist():
        xml = src.read("xl/sharedStrings.xml").decode()
        for si in re.findall(r"<si>(.*?)</si>", xml, re.S):
            shared.append("".join(re.findall(r"<t[^>]*>(.*?)</t>", si, re.S)))

    def inline(m):
        attrs, idx = m.group(1), int(m.group(2))
        attrs = attrs.replace(' t="s"', ' t="inlineStr"')
        return '<c%s><is><t xml:space="preserve">%s</t></is></c>' % (attrs, shared[idx])

    out = io.BytesIO()
    dst = zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED)
    for item in src.infolist():
        body = src.read(item.filename)
        if item.filename.startswith("xl/worksheets/sheet"):
            text = body.decode()
            text = re.sub(r'<c([^>]*t="s"[^>]*)><v>(\d+)</v></c>', inline, text)
            assert 't="s"' not in text
            body = text.encode()
        dst.writestr(item, body)
    dst.close()
    return out.getvalue()


def make_xls(spec):
    import xlwt

    wb = xlwt.Workbook(encoding="utf-8")
    ws = wb.add_sheet(spec.get("sheet", "Sheet1"))
    date_style = xlwt.easyxf(num_format_str="YYYY-MM-DD")
    for i, row in enumerate(spec["rows"]):
        for j, v in enumerate(row):
            v = cell_value(v)
            if v is None:
                continue
            if isinstance(v, (datetime.date, datetime.datetime)):
                ws.write(i, j, v, date_style)
            else:
                ws.write(i, j, v)
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()


def encrypt(data, password):
    import msoffcrypto
    from msoffcrypto.format.ooxml import OOXMLFile

    src = OOXMLFile(io.BytesIO(data))
    out = io.BytesIO()
    src.encrypt(password, out)
    return out.getvalue()


def zip_bomb(mb):
    """An .xlsx-looking zip whose sheet inflates from a few hundred KB to `mb` MiB of spaces."""
    out = io.BytesIO()
    z = zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED)
    z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
    with z.open("xl/worksheets/sheet1.xml", "w") as f:
        chunk = b" " * (1024 * 1024)
        for _ in range(mb):
            f.write(chunk)
    z.close()
    return out.getvalue()


def make(spec):
    fmt = spec.get("format", "xlsx")
    if fmt == "xlsx":
        data = make_xlsx(spec)
        if "password" in spec:
            data = encrypt(data, spec["password"])
    elif fmt == "xls":
        data = make_xls(spec)
    elif fmt == "zipbomb":
        data = zip_bomb(spec.get("bomb_mb", 64))
    else:
        data = spec.get("text", "not a spreadsheet").encode()
    with open(spec["out"], "wb") as f:
        f.write(data)


def text_of(v):
    if v is None:
        return None
    if isinstance(v, datetime.datetime):
        return v.isoformat(sep=" ")
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def read(path):
    import openpyxl

    wb = openpyxl.load_workbook(path)
    out = {"sheets": []}
    for ws in wb.worksheets:
        rows = [[text_of(c) for c in r] for r in ws.iter_rows(values_only=True)]
        out["sheets"].append(
            {
                "name": ws.title,
                "state": ws.sheet_state,
                "merged": [str(m) for m in ws.merged_cells.ranges],
                "validations": [
                    {"sqref": str(dv.sqref), "type": dv.type, "formula1": dv.formula1}
                    for dv in ws.data_validations.dataValidation
                ],
                "rows": rows,
            }
        )
    print(json.dumps(out, ensure_ascii=False))


def fix(spec):
    """{"path": file, "sheet": name, "set": [[row, col, value], ...], "delete_cols_from": n}"""
    import openpyxl

    wb = openpyxl.load_workbook(spec["path"])
    ws = wb[spec["sheet"]] if "sheet" in spec else wb.active
    for r, c, v in spec.get("set", []):
        ws.cell(row=r, column=c, value=cell_value(v))
    wb.save(spec["path"])


if __name__ == "__main__":
    cmd, arg = sys.argv[1], sys.argv[2]
    if cmd == "read":
        read(arg)
    else:
        with open(arg, encoding="utf-8") as f:
            spec = json.load(f)
        {"make": make, "fix": fix}[cmd](spec)
