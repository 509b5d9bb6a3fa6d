//! SMS templates: Chinese text with named parameters `${name}`, checked when saved (unknown
//! parameter, missing parameter, length) and when a text is rendered (every parameter given,
//! none unknown, value and text lengths). Pure functions, no I/O.

use std::collections::{BTreeMap, BTreeSet};

/// Longest template text, in characters (the gateways' limit for a template body).
pub const MAX_TEMPLATE_CHARS: usize = 500;
/// Longest value of one parameter, in characters (the gateways' limit per variable).
pub const MAX_PARAM_CHARS: usize = 35;
/// Longest rendered text (sign name excluded), in characters.
pub const MAX_TEXT_CHARS: usize = 500;

/// A problem with a template or its parameters: a stable code and both languages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// Where: `code`, `name`, `body`, `params`, `params.<name>`.
    pub field: String,
    /// Stable code: `invalid_code`, `unknown_parameter`, `missing_parameter`, `too_long`,
    /// `bad_placeholder`, `empty`, `invalid_parameter_name`.
    pub code: &'static str,
    pub message: String,
    pub message_zh: String,
}

fn err(field: &str, code: &'static str, en: String, zh: String) -> TemplateError {
    TemplateError {
        field: field.to_owned(),
        code,
        message: en,
        message_zh: zh,
    }
}

fn valid_name(n: &str) -> bool {
    let mut c = n.chars();
    matches!(c.next(), Some(f) if f.is_ascii_lowercase() || f == '_')
        && c.all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
        && n.len() <= 32
}

/// The parameter names a body uses, in order of first use; or the bad placeholder.
pub fn placeholders(body: &str) -> Result<Vec<String>, TemplateError> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("${") {
        let after = &rest[at + 2..];
        let Some(end) = after.find('}') else {
            return Err(err(
                "body",
                "bad_placeholder",
                "a `${` is not closed by `}`".into(),
                "占位符 `${` 缺少结束的 `}`".into(),
            ));
        };
        let name = &after[..end];
        if !valid_name(name) {
            return Err(err(
                "body",
                "bad_placeholder",
                format!("placeholder `${{{name}}}`: names are lowercase letters, digits and _"),
                format!("占位符 `${{{name}}}` 名称只能包含小写字母、数字和下划线"),
            ));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_owned());
        }
        rest = &after[end + 1..];
    }
    Ok(out)
}

/// Checks a template before it is saved; every error at once.
pub fn check_template(
    code: &str,
    name: &str,
    body: &str,
    params: &[String],
) -> Result<(), Vec<TemplateError>> {
    let mut errors = Vec::new();
    if code.is_empty()
        || code.len() > 64
        || !code
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        errors.push(err(
            "code",
            "invalid_code",
            "1 to 64 lowercase letters, digits or _".into(),
            "模板编码须为 1 到 64 位小写字母、数字或下划线".into(),
        ));
    }
    if name.trim().is_empty() || name.chars().count() > 64 {
        errors.push(err(
            "name",
            "empty",
            "the name is 1 to 64 characters".into(),
            "模板名称须为 1 到 64 个字符".into(),
        ));
    }
    if body.trim().is_empty() {
        errors.push(err(
            "body",
            "empty",
            "the text is empty".into(),
            "模板内容为空".into(),
        ));
    }
    let len = body.chars().count();
    if len > MAX_TEMPLATE_CHARS {
        errors.push(err(
            "body",
            "too_long",
            format!("{len} characters, at most {MAX_TEMPLATE_CHARS}"),
            format!("模板内容 {len} 字，超过 {MAX_TEMPLATE_CHARS} 字上限"),
        ));
    }
    let mut declared = BTreeSet::new();
    for p in params {
        if !valid_name(p) {
            errors.push(err(
                "params",
                "invalid_parameter_name",
                format!("`{p}`: lowercase letters, digits and _"),
                format!("参数名 `{p}` 只能包含小写字母、数字和下划线"),
            ));
        }
        declared.insert(p.as_str());
    }
    match placeholders(body) {
        Err(e) => errors.push(e),
        Ok(used) => {
            for u in &used {
                if !declared.contains(u.as_str()) {
                    errors.push(err(
                        "body",
                        "unknown_parameter",
                        format!("`${{{u}}}` is not a declared parameter"),
                        format!("占位符 `${{{u}}}` 不是已声明的参数"),
                    ));
                }
            }
            for d in &declared {
                if !used.iter().any(|u| u == d) {
                    errors.push(err(
                        "params",
                        "missing_parameter",
                        format!("parameter `{d}` is declared but the text does not use it"),
                        format!("参数 `{d}` 已声明但模板内容未使用"),
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Renders `body` with `values`: every declared parameter must be given, no other one, each
/// value at most [`MAX_PARAM_CHARS`] characters, the text at most [`MAX_TEXT_CHARS`].
pub fn render(
    body: &str,
    declared: &[String],
    values: &BTreeMap<String, String>,
) -> Result<String, Vec<TemplateError>> {
    let mut errors = Vec::new();
    for d in declared {
        match values.get(d) {
            None => errors.push(err(
                &format!("params.{d}"),
                "missing_parameter",
                format!("parameter `{d}` is not given"),
                format!("缺少参数 `{d}`"),
            )),
            Some(v) if v.chars().count() > MAX_PARAM_CHARS => errors.push(err(
                &format!("params.{d}"),
                "too_long",
                format!("at most {MAX_PARAM_CHARS} characters"),
                format!("参数值不能超过 {MAX_PARAM_CHARS} 字"),
            )),
            Some(_) => {}
        }
    }
    for k in values.keys() {
        if !declared.contains(k) {
            errors.push(err(
                &format!("params.{k}"),
                "unknown_parameter",
                format!("the template has no parameter `{k}`"),
                format!("模板没有参数 `{k}`"),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut text = body.to_owned();
    for (k, v) in values {
        text = text.replace(&format!("${{{k}}}"), v);
    }
    let len = text.chars().count();
    if len > MAX_TEXT_CHARS {
        return Err(vec![err(
            "body",
            "too_long",
            format!("the text is {len} characters, at most {MAX_TEXT_CHARS}"),
            format!("短信内容 {len} 字，超过 {MAX_TEXT_CHARS} 字上限"),
        )]);
    }
    Ok(text)
}

/// Shortens a value to the per-parameter limit (for summaries put into a text).
pub fn clip(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= MAX_PARAM_CHARS {
        s.to_owned()
    } else {
        let mut out: String = chars[..MAX_PARAM_CHARS - 1].iter().collect();
        out.push('…');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    fn codes(r: Result<(), Vec<TemplateError>>) -> Vec<(String, &'static str)> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn templates_are_checked_when_saved() {
        let body = "【信访】${unit}收到信访件${case_no}，请即时转办。";
        assert_eq!(
            codes(check_template(
                "push",
                "推送",
                body,
                &names(&["unit", "case_no"])
            )),
            []
        );
        assert_eq!(
            codes(check_template("push", "推送", body, &names(&["unit"]))),
            [("body".to_owned(), "unknown_parameter")]
        );
        assert_eq!(
            codes(check_template(
                "push",
                "推送",
                body,
                &names(&["unit", "case_no", "x"])
            )),
            [("params".to_owned(), "missing_parameter")]
        );
        let long = "字".repeat(MAX_TEMPLATE_CHARS + 1);
        assert_eq!(
            codes(check_template("push", "推送", &long, &[])),
            [("body".to_owned(), "too_long")]
        );
        assert_eq!(
            codes(check_template("Bad-Code", "", "${a", &[])),
            [
                ("code".to_owned(), "invalid_code"),
                ("name".to_owned(), "empty"),
                ("body".to_owned(), "bad_placeholder")
            ]
        );
    }

    #[test]
    fn rendering_needs_exactly_the_declared_parameters() {
        let declared = names(&["a", "b"]);
        let mut v = BTreeMap::new();
        v.insert("a".to_owned(), "甲".to_owned());
        v.insert("b".to_owned(), "乙".to_owned());
        assert_eq!(
            render("${a}和${b}和${a}", &declared, &v).unwrap(),
            "甲和乙和甲"
        );
        v.remove("b");
        v.insert("c".to_owned(), "丙".to_owned());
        let errs = render("${a}${b}", &declared, &v).unwrap_err();
        let got: Vec<_> = errs.iter().map(|e| (e.field.as_str(), e.code)).collect();
        assert_eq!(
            got,
            [
                ("params.b", "missing_parameter"),
                ("params.c", "unknown_parameter")
            ]
        );
        v.remove("c");
        v.insert("b".to_owned(), "长".repeat(MAX_PARAM_CHARS + 1));
        assert_eq!(
            render("${a}${b}", &declared, &v).unwrap_err()[0].code,
            "too_long"
        );
        assert_eq!(clip(&"长".repeat(50)).chars().count(), MAX_PARAM_CHARS);
    }
}
