use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::*;

/// A context from a map of path text to value.
struct Values(HashMap<String, DataValue>);

impl TemplateContext for Values {
    fn value(&self, path: &TemplatePath) -> Option<DataValue> {
        self.0.get(&path.to_string()).cloned()
    }
}

fn values(pairs: &[(&str, DataValue)]) -> Values {
    Values(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn s(v: &str) -> DataValue {
    DataValue::String(v.into())
}

fn render(src: &str, ctx: &Values) -> String {
    Template::parse(src).unwrap().render(ctx)
}

fn err(src: &str) -> String {
    Template::parse(src).unwrap_err().to_string()
}

#[test]
fn reads_every_path_and_prints_it_back() {
    let paths = [
        "name.first",
        "name.last",
        "name.full",
        "email",
        "phone",
        "first_name",
        "last_name",
        "company",
        "country",
        "city",
        "locale",
        "id",
        "data.price_plan",
        "agg.avg_basket",
        "session.id",
        "session.kind",
        "session.started_at",
        "session.data.order_no",
    ];
    for p in paths {
        let path: TemplatePath = p.parse().unwrap();
        assert_eq!(path.to_string(), p);
    }
    assert_eq!(
        "first_name".parse::<TemplatePath>(),
        Ok(TemplatePath::Profile(ProfileField::FirstName))
    );
    assert_eq!(
        "session.data.order_no".parse::<TemplatePath>(),
        Ok(TemplatePath::SessionData(DataKey::new("order_no").unwrap()))
    );
}

#[test]
fn substitutes_values_and_keeps_text() {
    let ctx = values(&[
        ("name.first", s("Ada")),
        ("session.data.order_no", s("A-17")),
    ]);
    assert_eq!(
        render(
            "Hello {{name.first}}, order {{ session.data.order_no }} ships today.\nBye",
            &ctx
        ),
        "Hello Ada, order A-17 ships today.\nBye"
    );
    // Text without placeholders, single braces and stray closers are kept as they are.
    assert_eq!(render("{ \"a\": 1 } }} done", &ctx), "{ \"a\": 1 } }} done");
    assert_eq!(render("", &ctx), "");
    assert_eq!(render("{{ name.first }}{{ name.first }}", &ctx), "AdaAda");
}

#[test]
fn missing_or_blank_values_show_the_fallback_or_nothing() {
    let ctx = values(&[("name.last", s("  ")), ("email", s("a@b.c"))]);
    assert_eq!(
        render(r#"Hi {{ name.first | "there" }}!"#, &ctx),
        "Hi there!"
    );
    assert_eq!(render(r#"Hi {{name.last|"you"}}!"#, &ctx), "Hi you!");
    assert_eq!(render("Hi {{ name.first }}!", &ctx), "Hi !");
    assert_eq!(
        render(r#"{{ email | "none" }}"#, &ctx),
        "a@b.c",
        "a value wins over the fallback"
    );
    assert_eq!(
        render(r#"{{ phone | "say \"hi\"\n\\o/" }}"#, &ctx),
        "say \"hi\"\n\\o/"
    );
    assert_eq!(render(r#"{{ phone | "" }}"#, &ctx), "");
}

#[test]
fn values_print_for_people() {
    let at: DateTime<Utc> = "2024-05-01T12:00:00.123+02:00".parse().unwrap();
    let cases = [
        (s("plain text"), "plain text"),
        (DataValue::Number(3.0), "3"),
        (DataValue::Number(-42.0), "-42"),
        (DataValue::Number(12.5), "12.5"),
        (DataValue::Number(0.1 + 0.2), "0.30000000000000004"),
        (DataValue::Number(-0.0), "0"),
        (DataValue::Number(1e15), "1000000000000000"),
        (DataValue::Bool(true), "true"),
        (DataValue::Bool(false), "false"),
        (DataValue::DateTime(at), "2024-05-01T10:00:00Z"),
    ];
    for (v, want) in cases {
        assert_eq!(human_text(&v), want, "{v:?}");
        assert_eq!(render("{{ agg.x }}", &values(&[("agg.x", v)])), want);
    }
}

#[test]
fn lists_what_it_needs_once_in_order() {
    let t = Template::parse(
        r#"{{ agg.total }} {{ name.first | "x" }} {{ agg.total }} {{ session.started_at }}"#,
    )
    .unwrap();
    let paths: Vec<String> = t.paths().iter().map(|p| p.to_string()).collect();
    assert_eq!(paths, ["agg.total", "name.first", "session.started_at"]);
    assert!(
        Template::parse("no placeholders")
            .unwrap()
            .paths()
            .is_empty()
    );
    let src = "Hi {{name.first}}";
    assert_eq!(Template::parse(src).unwrap().source(), src);
}

#[test]
fn output_is_capped_at_a_character_boundary() {
    // 3 placeholders of a 30 000-byte value: past the cap, cut inside a 2-byte character.
    let big = "é".repeat(15_000);
    let ctx = values(&[("data.note", s(&big))]);
    let out = render("x{{ data.note }}{{ data.note }}{{ data.note }}tail", &ctx);
    assert!(out.len() <= MAX_RENDER_BYTES, "{}", out.len());
    assert!(out.len() > MAX_RENDER_BYTES - 2);
    assert!(out.starts_with("xé") && out.ends_with('é'));
}

#[test]
fn bounds_hold() {
    let many = "{{ id }}".repeat(MAX_PLACEHOLDERS);
    assert_eq!(Template::parse(&many).unwrap().paths().len(), 1);
    insta::assert_snapshot!(err(&format!("{many}\n  {{{{ id }}}}")), @"invalid template at line 2, column 3: more than 256 placeholders");
    let long = "é".repeat(MAX_TEMPLATE_BYTES / 2 + 1);
    insta::assert_snapshot!(err(&long), @"invalid template at line 1, column 8193: template is 16386 bytes long, the maximum is 16384");
}

#[test]
fn refusals_say_what_and_where() {
    insta::assert_snapshot!(err("Hello {{ name.first"), @"invalid template at line 1, column 7: unterminated {{; close the placeholder with }}");
    insta::assert_snapshot!(err("Hello {{"), @"invalid template at line 1, column 7: unterminated {{; close the placeholder with }}");
    insta::assert_snapshot!(err("Hello {{ }}"), @"invalid template at line 1, column 10: empty placeholder; name a value, as in {{ name.first }}");
    insta::assert_snapshot!(err("Hello {{ | \"there\" }}"), @r#"invalid template at line 1, column 10: a placeholder starts with the value it shows, as in {{ name.first | "there" }}"#);
    insta::assert_snapshot!(err("Hello\n  {{ foo }}"), @r#"invalid template at line 2, column 6: unknown value "foo"; use one of name.first, name.last, name.full, email, phone, first_name, last_name, company, country, city, locale, id, data.<key>, agg.<name>, session.id, session.kind, session.started_at or session.data.<key>"#);
    insta::assert_snapshot!(err("{{ name }}"), @r#"invalid template at line 1, column 4: "name" is not a value; use name.first, name.last or name.full"#);
    insta::assert_snapshot!(err("{{ email.domain }}"), @"invalid template at line 1, column 4: email has no parts; write {{ email }}");
    insta::assert_snapshot!(err("{{ data.Plan }}"), @r#"invalid template at line 1, column 4: invalid data key "Plan": character 'P' is not allowed (use lowercase a-z, 0-9, '_' or '-')"#);
    insta::assert_snapshot!(err("{{ data }}"), @r#"invalid template at line 1, column 4: "data" is incomplete or unknown; use data.<key>"#);
    insta::assert_snapshot!(err("{{ session.contact }}"), @r#"invalid template at line 1, column 4: "session.contact" is incomplete or unknown; use session.id, session.kind, session.started_at or session.data.<key>"#);
    insta::assert_snapshot!(err("{{ session.data.x y }}"), @"invalid template at line 1, column 19: expected }} to close the placeholder opened at line 1, column 1, found 'y'");
    insta::assert_snapshot!(err("{{ name.first | there }}"), @r#"invalid template at line 1, column 17: a fallback is a quoted string, as in {{ name.first | "there" }}, found 't'"#);
    insta::assert_snapshot!(err("{{ name.first | 'there' }}"), @r#"invalid template at line 1, column 17: a fallback is a quoted string, as in {{ name.first | "there" }}, found '\''"#);
    insta::assert_snapshot!(err("{{ name.first | \"there }}"), @r#"invalid template at line 1, column 17: unterminated fallback string; close it with " on the same line"#);
    insta::assert_snapshot!(err("{{ name.first | \"a\" | \"b\" }}"), @"invalid template at line 1, column 21: expected }} to close the placeholder opened at line 1, column 1, found '|'");
    insta::assert_snapshot!(err("{{ name.first | \"a\\tb\" }}"), @r#"invalid template at line 1, column 19: unknown escape "\t" in a fallback; use \", \\ or \n"#);
    insta::assert_snapshot!(err("{{ name.first |"), @r#"invalid template at line 1, column 16: a fallback is a quoted string, as in {{ name.first | "there" }}, found end of template"#);
    // Columns count characters, not bytes.
    insta::assert_snapshot!(err("Grüße {{ nom }}"), @r#"invalid template at line 1, column 10: unknown value "nom"; use one of name.first, name.last, name.full, email, phone, first_name, last_name, company, country, city, locale, id, data.<key>, agg.<name>, session.id, session.kind, session.started_at or session.data.<key>"#);
}
